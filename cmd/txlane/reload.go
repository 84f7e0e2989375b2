package main

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
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

	// admin is the HTTP endpoint (nil: none), set once it exists; guarded
	// by mu, which reload holds while it applies a configuration.
	admin *adminHTTP

	mu struct {
		sync.Mutex
		// cur is the configuration in force and src the sources of its
		// values. Its Restart keys (config.Keys) hold the values txlane
		// started with, whatever the file says now.
		cur *config.Config
		src config.Sources
		sum [32]byte // of the file content last tried
	}
	watcher *fsnotify.Watcher
	done    chan struct{}
	wg      sync.WaitGroup
}

func newReloader(path string, cfg *config.Config, src config.Sources, log *zap.Logger, level zap.AtomicLevel, m *proxy.Metrics) *reloader {
	r := &reloader{path: path, log: log, level: level, metrics: m, done: make(chan struct{})}
	r.mu.cur, r.mu.src = cfg, src
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
	var next config.Reloaded
	cfg, src, err := config.ParseWithSources(r.path, data)
	if err == nil {
		next = config.Apply(r.mu.cur, r.mu.src, cfg, src)
		err = r.apply(next.Config, next.Sources)
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
	r.mu.cur, r.mu.src = next.Config, next.Sources
	r.metrics.Reloaded(nil)
	if len(next.Restart) > 0 {
		log.Warn("configuration keys changed that apply only after a restart; their old values stay in force",
			zap.Strings("keys", next.Restart))
	}
	if len(next.Live) == 0 {
		// Still a reload: auth_file is read again at every one.
		log.Info("configuration reloaded; no key that applies live changed")
		return nil
	}
	log.Info("configuration reloaded", zap.Strings("changed", next.Live))
	return nil
}

// apply hands a validated configuration to the server and the logger. cfg
// is what config.Apply keeps in force: its Restart keys hold the values
// txlane started with, and the proxy ignores the options built from them
// (see proxy.Server.Reload); TLS files are not read again.
func (r *reloader) apply(cfg *config.Config, src config.Sources) error {
	level, err := zapLevel(cfg.Log.Level)
	if err != nil {
		return err
	}
	opts, err := proxyOptions(cfg, r.log)
	if err != nil {
		return err
	}
	opsOptions(cfg, src, &opts)
	if err := r.srv.Reload(opts); err != nil {
		return err
	}
	r.level.SetLevel(level)
	r.admin.setPprof(cfg.Admin.Pprof)
	return nil
}

// setAdmin hands the reloader the HTTP endpoint whose admin.pprof reloads
// turn on and off.
func (r *reloader) setAdmin(a *adminHTTP) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.admin = a
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

// settings lists every configuration key for SHOW POLICY: its value in cfg
// (passwords masked) and where it came from (default, file, env).
func settings(cfg *config.Config, src config.Sources) []proxy.Setting {
	rows := cfg.Rows(src)
	out := make([]proxy.Setting, len(rows))
	for i, row := range rows {
		out[i] = proxy.Setting{Name: row.Key, Value: row.Value, Source: string(row.Source)}
	}
	return out
}
