// Command h2server is xconnect's test program: an HTTP/2 (TLS) server whose
// only link to xconnect is a blank import, as cmd/paf has. It prints its
// address and serves until its standard input closes.
package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"

	_ "github.com/pafhq/paf/internal/xconnect"
)

func main() {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	fmt.Println(srv.Listener.Addr())
	io.Copy(io.Discard, os.Stdin)
}
