package raftlog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/lni/dragonboat/v4/logger"
)

// dragonboat logs through a process-wide factory that may be set once, before its first log
// line. The factory installed here sends every dragonboat package's lines to the logger of the
// last Log opened (one per process outside tests), one level down: dragonboat logs each
// election, snapshot and dropped proposal at Info or Warning, which is Debug and Info for a
// broker.
var dragonboatLogs struct {
	once sync.Once
	to   atomic.Pointer[slog.Logger]
}

func routeDragonboatLogs(l *slog.Logger) {
	dragonboatLogs.to.Store(l)
	dragonboatLogs.once.Do(func() {
		logger.SetLoggerFactory(func(pkg string) logger.ILogger {
			d := &dragonboatLogger{pkg: pkg}
			d.level.Store(int32(logger.DEBUG)) // everything; the slog handler filters
			return d
		})
	})
}

type dragonboatLogger struct {
	pkg   string
	level atomic.Int32 // logger.LogLevel: dragonboat's own filter, set by SetLevel
}

func (d *dragonboatLogger) SetLevel(l logger.LogLevel) { d.level.Store(int32(l)) }

func (d *dragonboatLogger) log(dl logger.LogLevel, level slog.Level, format string, args []any) {
	if dl > logger.LogLevel(d.level.Load()) {
		return
	}
	l := dragonboatLogs.to.Load()
	if l == nil || !l.Enabled(context.Background(), level) {
		return
	}
	l.Log(context.Background(), level, fmt.Sprintf(format, args...), "dragonboat", d.pkg)
}

func (d *dragonboatLogger) Debugf(format string, args ...any) {
	d.log(logger.DEBUG, slog.LevelDebug-4, format, args)
}
func (d *dragonboatLogger) Infof(format string, args ...any) {
	d.log(logger.INFO, slog.LevelDebug, format, args)
}
func (d *dragonboatLogger) Warningf(format string, args ...any) {
	d.log(logger.WARNING, slog.LevelInfo, format, args)
}
func (d *dragonboatLogger) Errorf(format string, args ...any) {
	d.log(logger.ERROR, slog.LevelError, format, args)
}

// Panicf: dragonboat calls it on states it cannot continue from and expects it not to return.
func (d *dragonboatLogger) Panicf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if l := dragonboatLogs.to.Load(); l != nil {
		l.Error(msg, "dragonboat", d.pkg)
	}
	panic(fmt.Sprintf("dragonboat/%s: %s", d.pkg, msg))
}
