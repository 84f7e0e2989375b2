package console

import (
	"context"
	"errors"
	"fmt"
)

// The handlers of the commands that act: RELOAD, PAUSE, RESUME, EXPLAIN and
// SET.

// reload reads the configuration file again. A refused file is F0000 with
// the problems in the detail; the last good configuration stays.
func reload(c *call, _ string) (*result, *Error) {
	c.log.Info("admin console: RELOAD")
	err := c.p.Reload()
	switch {
	case errors.Is(err, ErrNoReload):
		return nil, errorf(CodeFeatureNotSupported, "RELOAD is not available: %v", err)
	case err != nil:
		e := errorf(CodeConfigFile, "configuration reload failed; the last good configuration stays in force")
		e.Detail = err.Error()
		return nil, e
	}
	return &result{}, nil
}

// pause holds new requests and waits up to query_wait_timeout for the proxy
// to become quiet; past it the pause stays and the client gets a warning.
func pause(c *call, _ string) (*result, *Error) {
	c.log.Info("admin console: PAUSE")
	wait := c.p.QueryWaitTimeout()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	err := c.p.Pause(ctx)
	cancel()
	res := &result{}
	switch {
	case errors.Is(err, ErrStopping):
		return nil, &Error{Severity: "FATAL", Code: CodeAdminShutdown, Message: "txlane is shutting down"}
	case err != nil:
		res.notices = append(res.notices, fmt.Sprintf(
			"txlane is paused, but after %s (query_wait_timeout) clients are still inside transactions or running requests", wait))
	}
	return res, nil
}

func resume(c *call, _ string) (*result, *Error) {
	c.log.Info("admin console: RESUME")
	c.p.Resume()
	return &result{}, nil
}

// explain shows the explanation of sql as `txlane explain` prints it, one
// key/value row per line.
func explain(c *call, sql string) (*result, *Error) {
	e := c.p.Explain(sql)
	var rows [][]string
	for _, kv := range e.Lines() {
		rows = append(rows, []string{kv[0], kv[1]})
	}
	return &result{rows: rows}, nil
}

// set accepts and ignores a setting: some drivers set parameters when they
// connect.
// NOTE: the value is not logged (it might be a secret).
func set(*call, string) (*result, *Error) { return &result{}, nil }
