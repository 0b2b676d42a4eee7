package main

import (
	"log/slog"
	"net/http"
	"sync"

	"github.com/ringtail/ringtail/engine"
)

// faultInjectionEnv, set to 1, adds fault-injection endpoints to --debug-listen, for the tests
// that prove the watchdog notices a stuck broker. Never set it in production: a wedged WAL
// writer stops every acknowledgement.
const faultInjectionEnv = "RINGTAIL_FAULT_INJECTION"

// Fault endpoints (POST, on --debug-listen, with RINGTAIL_FAULT_INJECTION=1 only).
const (
	faultWedgeWALPath   = "/debug/ringtail/fault/wedge-wal"   // hold the WAL writer before its next cycle
	faultReleaseWALPath = "/debug/ringtail/fault/release-wal" // let it go again
)

func registerFaultHandlers(mux *http.ServeMux, log *slog.Logger, storage *engine.Engine) {
	var mu sync.Mutex
	var release func()
	log.Warn("fault injection endpoints enabled (" + faultInjectionEnv + "=1): not for production")
	mux.HandleFunc(faultWedgeWALPath, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if release == nil {
			release = storage.WedgeWAL()
			log.Warn("fault injection: the WAL writer is wedged")
		}
	})
	mux.HandleFunc(faultReleaseWALPath, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if release != nil {
			release()
			release = nil
			log.Warn("fault injection: the WAL writer is released")
		}
	})
}
