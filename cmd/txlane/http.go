package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/txlane/txlane/proxy"
)

// readyTimeout bounds /readyz's check of the primary.
const readyTimeout = 2 * time.Second

// adminHTTP is the HTTP endpoint at admin.listen: /metrics, /healthz,
// /readyz. A nil *adminHTTP is a disabled endpoint.
type adminHTTP struct {
	srv *http.Server
	// stopping makes /readyz answer 503 during a graceful stop, so that load
	// balancers send no new clients.
	stopping atomic.Bool
	// pprof turns /debug/pprof/ on (admin.pprof, live: see setPprof).
	pprof atomic.Bool
	done  chan struct{}
}

// startAdminHTTP listens on addr and serves:
//
//	/metrics  Prometheus text: Go and process collectors, and txlane's own
//	/healthz  200 while the process is up
//	/readyz   200 when the primary accepts a connection and answers SELECT 1
//	          within 2s (as the primary DSN's own user and database), else 503
//	/debug/pprof/  Go's runtime profiles (net/http/pprof) while pprof is on
//	          (admin.pprof), 404 otherwise
func startAdminHTTP(addr string, srv *proxy.Server, primary *pgconn.Config, pprofOn bool, log *zap.Logger) (*adminHTTP, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := srv.Register(reg); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	a := &adminHTTP{done: make(chan struct{})}
	a.pprof.Store(pprofOn)
	mux := http.NewServeMux()
	// NOTE: the handlers are registered on this mux by name; importing
	// net/http/pprof also registers them on http.DefaultServeMux, which
	// txlane never serves.
	mux.Handle("/debug/pprof/", a.ifPprof(pprof.Index)) // and the named profiles: heap, goroutine, ...
	mux.Handle("/debug/pprof/cmdline", a.ifPprof(pprof.Cmdline))
	mux.Handle("/debug/pprof/profile", a.ifPprof(pprof.Profile))
	mux.Handle("/debug/pprof/symbol", a.ifPprof(pprof.Symbol))
	mux.Handle("/debug/pprof/trace", a.ifPprof(pprof.Trace))
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(log), Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if a.stopping.Load() {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := pingPrimary(ctx, primary); err != nil {
			log.Debug("readyz: primary not ready", zap.Error(err))
			http.Error(w, "primary not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log)}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin HTTP endpoint failed", zap.Error(err))
		}
	}()
	log.Info("admin HTTP endpoint listening", zap.String("admin.listen", ln.Addr().String()))
	return a, nil
}

// ifPprof serves h while pprof is on, and 404 otherwise.
func (a *adminHTTP) ifPprof(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.pprof.Load() {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	})
}

// setPprof turns /debug/pprof/ on or off (a reload of admin.pprof); a
// profile being taken runs to its end. A nil a (no endpoint) ignores it.
func (a *adminHTTP) setPprof(on bool) {
	if a != nil {
		a.pprof.Store(on)
	}
}

// pingPrimary connects to the primary and runs SELECT 1.
func pingPrimary(ctx context.Context, primary *pgconn.Config) error {
	conn, err := pgconn.ConnectConfig(ctx, primary.Copy())
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "SELECT 1").ReadAll()
	closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(closeCtx)
	return err
}

// close stops the endpoint, letting a scrape in progress finish.
func (a *adminHTTP) close() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	a.srv.Shutdown(ctx)
	<-a.done
}
