// Package invariants switches expensive consistency checks on in test
// builds: code guards them with `if invariants.Enabled { ... }`, which the
// compiler removes from normal builds. Enabled is true with -tags invariants
// and under -race, so `make race` (part of `make test`) runs them. A check
// that fails panics with a message naming what broke.
package invariants
