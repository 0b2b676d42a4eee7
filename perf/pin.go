package perf

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// The pinned mode (workloads named <name>-pinned): the broker runs on one CPU and the client
// on the others, so that a run shows what each costs without the other preempting it. The
// broker is confined from its first instruction (test/cluster ProcessConfig.CPUs), so a Go
// broker sizes GOMAXPROCS to its one CPU as it would under taskset; the client is this
// process, confined while the run lasts.

// splitCPUs gives the broker the last CPU this process may use and the client the others.
func splitCPUs() (broker, client []int, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, nil, fmt.Errorf("cpu affinity: %w", err)
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return nil, nil, errors.New("needs two CPUs (one for the broker, one for the client)")
	}
	return cpus[len(cpus)-1:], cpus[:len(cpus)-1], nil
}

// pinSelf confines every thread of this process to cpus and sizes GOMAXPROCS to them; the
// returned func puts both back. Threads made meanwhile inherit their maker's CPUs, so passes
// repeat until one finds no thread it has not confined.
func pinSelf(cpus []int) (unpin func(), err error) {
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		return nil, fmt.Errorf("cpu affinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	procs := runtime.GOMAXPROCS(len(cpus))
	restore := func() {
		_ = setAllThreads(&old)
		runtime.GOMAXPROCS(procs)
	}
	if err := setAllThreads(&set); err != nil {
		restore()
		return nil, fmt.Errorf("confine the client to cpus %v: %w", cpus, err)
	}
	return restore, nil
}

// setAllThreads sets the affinity of every thread of this process.
func setAllThreads(set *unix.CPUSet) error {
	done := map[int]bool{}
	for {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := false
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh = true
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
			done[tid] = true
		}
		if !fresh {
			return nil
		}
	}
}
