package main

import (
	"crypto/sha256"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/txlane/txlane/config"
	"github.com/txlane/txlane/proxy"
)

// reloadDebounce is how long the file watcher waits after the last event
// before reading the file: an editor's write, or its write of a temporary
// file and rename, arrives as a burst of events.
const reloadDebounce = 100 * time.Millisecond

// reloader re-reads the configuration file and applies it: parse →
// validate → swap. A bad file keeps the last good configuration; each
// problem is logged as FILE:LINE:COL: message and counted in
// txlane_config_reload_errors_total.
type reloader struct {
	path    string
	log     *zap.Logger
	level   zap.AtomicLevel
	metrics *proxy.Metrics
	srv     *proxy.Server // set once the server exists
	// started is the configuration txlane started with: keys that apply only
	// at start are compared against it.
	started *config.Config

	mu struct {
		sync.Mutex
		cur *config.Config // the configuration in force
		sum [32]byte       // of the file content last tried
	}
	watcher *fsnotify.Watcher
	done    chan struct{}
	wg      sync.WaitGroup
}

func newReloader(path string, cfg *config.Config, log *zap.Logger, level zap.AtomicLevel, m *proxy.Metrics) *reloader {
	r := &reloader{path: path, log: log, level: level, metrics: m, started: cfg, done: make(chan struct{})}
	r.mu.cur = cfg
	if data, err := os.ReadFile(path); err == nil {
		r.mu.sum = sha256.Sum256(data)
	}
	return r
}

// current returns the configuration in force.
func (r *reloader) current() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.cur
}

// reload reads the file and applies it. trigger names the cause in the log.
// Unless force is set, a file whose content has not changed since the last
// attempt is left alone (the watcher sees events that are not edits).
func (r *reloader) reload(trigger string, force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.log.With(zap.String("trigger", trigger), zap.String("config", r.path))
	data, err := os.ReadFile(r.path)
	if err != nil {
		if !force && errors.Is(err, os.ErrNotExist) {
			return nil // mid-rename; the file's creation is another event
		}
		log.Error("configuration reload failed; keeping the last good configuration", zap.Error(err))
		r.metrics.Reloaded(err)
		return err
	}
	sum := sha256.Sum256(data)
	if !force && sum == r.mu.sum {
		return nil
	}
	r.mu.sum = sum
	cfg, err := config.Parse(r.path, data)
	if err == nil {
		err = r.apply(cfg)
	}
	if err != nil {
		var problems config.Errors
		if errors.As(err, &problems) {
			for _, p := range problems {
				log.Error(p.Error())
			}
			log.Error("configuration reload failed; keeping the last good configuration", zap.Int("problems", len(problems)))
		} else {
			log.Error("configuration reload failed; keeping the last good configuration", zap.Error(err))
		}
		r.metrics.Reloaded(err)
		return err
	}
	r.mu.cur = cfg
	r.metrics.Reloaded(nil)
	if keys := restartKeys(r.started, cfg); len(keys) > 0 {
		log.Warn("configuration keys changed that apply only after a restart; their old values stay in force",
			zap.Strings("keys", keys))
	}
	log.Info("configuration reloaded")
	return nil
}

// apply hands a validated configuration to the server and the logger.
func (r *reloader) apply(cfg *config.Config) error {
	level, err := zapLevel(cfg.Log.Level)
	if err != nil {
		return err
	}
	// TLS files are read only at start (tls.* needs a restart).
	noTLS := *cfg
	noTLS.TLS = config.TLS{}
	opts, err := proxyOptions(&noTLS, r.log)
	if err != nil {
		return err
	}
	opsOptions(cfg, &opts)
	if err := r.srv.Reload(opts); err != nil {
		return err
	}
	r.level.SetLevel(level)
	return nil
}

// restartKeys lists the keys whose change needs a restart and that differ
// between the configuration txlane started with and cfg.
func restartKeys(started, cfg *config.Config) []string {
	var keys []string
	for _, k := range []struct {
		key      string
		old, new string
	}{
		{"listen", started.Listen, cfg.Listen},
		{"admin.listen", started.Admin.Listen, cfg.Admin.Listen},
		{"primary", started.Primary, cfg.Primary},
		{"read_pool.dsn", started.ReadPool.DSN, cfg.ReadPool.DSN},
		{"tls.cert", started.TLS.Cert, cfg.TLS.Cert},
		{"tls.key", started.TLS.Key, cfg.TLS.Key},
		{"log.format", string(started.Log.Format), string(cfg.Log.Format)},
	} {
		if k.old != k.new {
			keys = append(keys, k.key)
		}
	}
	return keys
}

// watch reloads the file when it changes. It watches the file's directory,
// not the file: an editor that writes a temporary file and renames it over
// the original replaces the inode a file watch would follow.
func (r *reloader) watch() error {
	abs, err := filepath.Abs(r.path)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dir, base := filepath.Split(abs)
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	// A symbolic link (a Kubernetes ConfigMap, say) changes through its
	// target: then every event in the directory is a candidate, and the
	// content comparison in reload filters.
	fi, err := os.Lstat(abs)
	anyEvent := err == nil && fi.Mode()&os.ModeSymlink != 0
	r.watcher = w
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-r.done:
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod || (!anyEvent && filepath.Base(ev.Name) != base) {
					continue
				}
				timer.Reset(reloadDebounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				r.log.Warn("watching the configuration file", zap.Error(err))
			case <-timer.C:
				r.reload("file change", false)
			}
		}
	}()
	return nil
}

// close stops the watcher.
func (r *reloader) close() {
	close(r.done)
	if r.watcher != nil {
		r.watcher.Close()
	}
	r.wg.Wait()
}

// describeConfig lists cfg's keys and values for SHOW POLICY, with
// passwords in connection strings masked.
func describeConfig(cfg *config.Config) []proxy.Setting {
	d := func(v time.Duration) string { return v.String() }
	list := func(xs []string) string { return "[" + strings.Join(xs, ", ") + "]" }
	overrides := make([]string, 0, len(cfg.Policy.EscapeOverrides))
	for _, o := range cfg.Policy.EscapeOverrides {
		overrides = append(overrides, o.Table+": "+string(o.Escape))
	}
	p, rp := cfg.Policy, cfg.ReadPool
	return []proxy.Setting{
		{Name: "listen", Value: cfg.Listen},
		{Name: "primary", Value: maskDSN(cfg.Primary)},
		{Name: "read_pool.dsn", Value: maskDSN(rp.DSN)},
		{Name: "read_pool.max_conns", Value: strconv.Itoa(rp.MaxConns)},
		{Name: "read_pool.min_idle", Value: strconv.Itoa(rp.MinIdle)},
		{Name: "read_pool.acquire_timeout", Value: d(rp.AcquireTimeout)},
		{Name: "read_pool.max_lifetime", Value: d(rp.MaxLifetime)},
		{Name: "read_pool.health_check_period", Value: d(rp.HealthCheckPeriod)},
		{Name: "read_pool.on_unavailable", Value: string(rp.OnUnavailable)},
		{Name: "policy.vector_tables", Value: list(p.VectorTables)},
		{Name: "policy.discover_vector_tables", Value: strconv.FormatBool(p.DiscoverVectorTables)},
		{Name: "policy.discover_interval", Value: d(p.DiscoverInterval)},
		{Name: "policy.after_write", Value: string(p.AfterWrite)},
		{Name: "policy.escape", Value: string(p.Escape)},
		{Name: "policy.escape_overrides", Value: list(overrides)},
		{Name: "policy.unit_comment_keys", Value: list(p.UnitCommentKeys)},
		{Name: "policy.reroute_wait_timeout", Value: d(p.RerouteWaitTimeout)},
		{Name: "policy.writing_functions", Value: list(p.WritingFunctions)},
		{Name: "policy.read_only_functions", Value: list(p.ReadOnlyFunctions)},
		{Name: "admin.listen", Value: cfg.Admin.Listen},
		{Name: "admin.users", Value: list(cfg.Admin.Users)},
		{Name: "log.level", Value: string(cfg.Log.Level)},
		{Name: "log.format", Value: string(cfg.Log.Format)},
		{Name: "tls.cert", Value: cfg.TLS.Cert},
		{Name: "tls.key", Value: cfg.TLS.Key},
		{Name: "max_client_conn", Value: strconv.Itoa(cfg.MaxClientConn)},
		{Name: "max_message_size", Value: cfg.MaxMessageSize.String()},
		{Name: "client_login_timeout", Value: d(cfg.ClientLoginTimeout)},
		{Name: "query_wait_timeout", Value: d(cfg.QueryWaitTimeout)},
		{Name: "idle_in_transaction_timeout", Value: d(cfg.IdleInTransactionTimeout)},
		{Name: "shutdown_timeout", Value: d(cfg.ShutdownTimeout)},
	}
}

// kvPassword matches a password in a key=value connection string.
var kvPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// maskDSN hides the password of a libpq URL or key=value connection string.
func maskDSN(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "(unparsable URL)"
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return kvPassword.ReplaceAllString(dsn, "${1}xxxxx")
}
