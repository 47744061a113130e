package proxy

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"strconv"
	"syscall"
)

// errorPage answers a short HTML page saying what went wrong, never
// cached.
func errorPage(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	title := strconv.Itoa(code) + " " + http.StatusText(code)
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	fmt.Fprintf(w, "<!doctype html>\n<title>%s</title>\n<h1>%s</h1>\n<p>%s</p>\n<hr><small>paf proxy</small>\n",
		title, title, html.EscapeString(msg))
}

// errorHandler turns a forwarding failure into 413, 502 or 504.
func (pl *pool) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	code, msg := http.StatusBadGateway, "The site's server could not be reached."
	switch {
	case errors.As(err, &tooBig):
		code, msg = http.StatusRequestEntityTooLarge, "The request body is larger than this site accepts."
	case errors.Is(err, errAllDown):
		msg = "The site's servers are all down at the moment."
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client left; nobody reads this answer.
		w.WriteHeader(http.StatusBadGateway)
		return
	case isTimeout(err):
		code, msg = http.StatusGatewayTimeout, "The site's server took too long to answer."
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = "The site's server refused the connection."
	}
	pl.p.log.Warn("proxy error", "host", pl.route.Host, "method", r.Method, "path", r.URL.Path,
		"status", code, "error", err.Error())
	errorPage(w, r, code, msg)
}

// isTimeout reports a deadline passed while dialling or waiting for the
// backend.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
