package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/route"
)

// WantsACME reports whether a route's certificate comes from ACME when the
// proxy runs with ACME: routes saying certificate = "acme", and those
// leaving the default. Passthrough routes terminate TLS at their backend
// and need no certificate here.
func WantsACME(r *route.Route) bool {
	return !r.Passthrough && (r.Certificate == route.CertACME || r.Certificate == route.CertDefault)
}

// ACMEHosts obtains and renews ACME certificates for the routed hostnames
// that want them (WantsACME), following the routing table: a host added to
// the routes starts being managed at once, without a restart, and a removed
// one stops being managed.
//
// It keeps one certs.ACME per hostname, each managing that one name: a
// certs.ACME manages a fixed set of names, and one per name lets names come
// and go independently. They share the storage, hence one ACME account
// (CertMagic creates it under a storage lock), the certificates and the
// challenge tokens. Their New must set certs.ACMEConfig.KeepLocksOnClose:
// stopping a removed name's manager then keeps the storage locks of names
// still being ordered, and Close releases them all once every manager has
// stopped.
//
// ACMEHosts is a certs.Getter; its methods are safe for concurrent use.
type ACMEHosts struct {
	// New returns the manager of one lower-case hostname, not started:
	// certs.NewACME with Hostnames set to just host. Required.
	New func(ctx context.Context, host string) (*certs.ACME, error)
	// Logger receives names starting and stopping being managed, and
	// managers that could not be created. Nil discards.
	Logger *slog.Logger

	mu       sync.Mutex
	ctx      context.Context // Start's, cancelled by Close
	cancel   context.CancelFunc
	httpAddr net.Addr
	tlsAddr  net.Addr
	started  bool
	closed   bool
	want     []string
	hosts    map[string]*acmeHost
	dirty    bool           // want changed since the worker last looked
	syncing  bool           // the worker goroutine is running
	worker   sync.WaitGroup // the worker, waited for by Close
}

type acmeHost struct {
	a      *certs.ACME
	cancel context.CancelFunc
}

func (h *ACMEHosts) log() *slog.Logger {
	if h.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Logger
}

// Start begins managing the names of the last Sync (and of later ones):
// httpAddr and tlsAddr are the bound listeners answering the HTTP-01 and
// TLS-ALPN-01 challenges, as for certs.ACME.Start. Managers stop when ctx
// is done or at Close. Like Sync, it returns at once: managers are created
// in the background.
func (h *ACMEHosts) Start(ctx context.Context, httpAddr, tlsAddr net.Addr) error {
	if h.New == nil {
		return errors.New("proxy: acme: no New function")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return errors.New("proxy: acme: Start called twice")
	}
	if h.closed {
		return errors.New("proxy: acme: closed")
	}
	h.started = true
	h.ctx, h.cancel = context.WithCancel(ctx)
	h.httpAddr, h.tlsAddr = httpAddr, tlsAddr
	h.kickLocked()
	return nil
}

// Sync makes the managed names those of t's routes that want ACME. Before
// Start it only records them.
//
// Sync returns at once (it runs in Proxy.Apply, with reloads held):
// creating and starting a manager reads the storage, which may be slow (a
// Git remote), so a background goroutine does it, always working towards
// the table of the latest Sync. Names removed stop being managed at once.
// Handshakes for names already managed never wait for new ones.
func (h *ACMEHosts) Sync(t *route.Table) {
	var names []string
	for _, r := range t.Routes() {
		if WantsACME(r) {
			names = append(names, r.Host)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.want = names
	if h.started {
		h.kickLocked()
	}
}

// kickLocked records that want changed, stops the managers of names no
// longer wanted, and makes sure the worker runs to add the new ones.
func (h *ACMEHosts) kickLocked() {
	if h.closed || h.ctx.Err() != nil {
		return
	}
	if h.hosts == nil {
		h.hosts = map[string]*acmeHost{}
	}
	for name, ah := range h.hosts {
		if !slices.Contains(h.want, name) {
			ah.cancel() // Start's goroutine closes the manager
			delete(h.hosts, name)
			h.log().Info("ACME: name no longer routed: certificate not renewed any more", "name", name)
		}
	}
	h.dirty = true
	if !h.syncing {
		h.syncing = true
		h.worker.Add(1)
		go h.work()
	}
}

// work creates and starts the managers of wanted names, without holding
// h.mu while they read the storage, until no Sync came in meanwhile.
func (h *ACMEHosts) work() {
	defer h.worker.Done()
	for {
		h.mu.Lock()
		if !h.dirty || h.closed || h.ctx.Err() != nil {
			h.syncing = false
			h.mu.Unlock()
			return
		}
		h.dirty = false
		var add []string
		for _, name := range h.want {
			if h.hosts[name] == nil && !slices.Contains(add, name) {
				add = append(add, name)
			}
		}
		h.mu.Unlock()

		var added []string
		for _, name := range add {
			if h.stale(name) {
				continue // removed by a later Sync while others started
			}
			ah, err := h.startOne(name)
			if err != nil {
				if h.ctx.Err() == nil {
					h.log().Error("ACME: cannot manage this name's certificate", "name", name, "error", err.Error())
				}
				continue
			}
			h.mu.Lock()
			keep := !h.closed && h.ctx.Err() == nil && slices.Contains(h.want, name) && h.hosts[name] == nil
			if keep {
				h.hosts[name] = ah
			}
			h.mu.Unlock()
			if !keep {
				ah.cancel()
				ah.a.Close()
				continue
			}
			added = append(added, name)
		}
		if len(added) > 0 {
			h.log().Info("ACME: managing certificates", "names", strings.Join(added, ","))
		}
	}
}

// stale reports whether name need not be started any more: closed, no
// longer wanted, or already managed.
func (h *ACMEHosts) stale(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed || h.ctx.Err() != nil || !slices.Contains(h.want, name) || h.hosts[name] != nil
}

// startOne creates and starts name's manager. It runs without h.mu held;
// h.ctx and the addresses are fixed once Start has run.
func (h *ACMEHosts) startOne(name string) (*acmeHost, error) {
	ctx, cancel := context.WithCancel(h.ctx)
	a, err := h.New(ctx, name)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := a.Start(ctx, h.httpAddr, h.tlsAddr); err != nil {
		cancel()
		a.Close()
		return nil, err
	}
	return &acmeHost{a: a, cancel: cancel}, nil
}

// lookup returns the manager of a Host header or SNI value, nil if none.
func (h *ACMEHosts) lookup(host string) *certs.ACME {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ah := h.hosts[route.NormalizeHost(host)]; ah != nil {
		return ah.a
	}
	return nil
}

// GetCertificate implements certs.Getter: the managed certificate (or
// TLS-ALPN-01 challenge certificate) of the name asked for.
func (h *ACMEHosts) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	a := h.lookup(hello.ServerName)
	if a == nil {
		return nil, fmt.Errorf("proxy: acme: %q is not managed", hello.ServerName)
	}
	return a.GetCertificate(hello)
}

// HTTPChallengeHandler answers ACME HTTP-01 validation requests for the
// managed names (server.Config.ChallengeHandler); others get 404.
func (h *ACMEHosts) HTTPChallengeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := h.lookup(r.Host)
		if a == nil {
			http.NotFound(w, r)
			return
		}
		a.HTTPChallengeHandler().ServeHTTP(w, r)
	})
}

// Names returns the managed names, sorted.
func (h *ACMEHosts) Names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var names []string
	for n := range h.hosts {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Close stops every manager, and waits for the one being created, if
// any; certificates already obtained stay in the storage.
func (h *ACMEHosts) Close() {
	h.mu.Lock()
	h.closed = true
	hosts := h.hosts
	h.hosts = nil
	if h.cancel != nil {
		h.cancel() // a manager being created stops reading the storage
	}
	h.mu.Unlock()
	// Each Close waits for its orders to let go of the storage: in
	// parallel, so that many names do not add up their waits.
	var closing sync.WaitGroup
	for _, ah := range hosts {
		ah.cancel()
		closing.Go(ah.a.Close)
	}
	closing.Wait()
	h.worker.Wait()
	certs.ReleaseLocks(h.log())
}
