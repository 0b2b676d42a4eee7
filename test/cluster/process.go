package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrExited is wrapped by every wait that ended because the process exited
// before the awaited condition held.
var ErrExited = errors.New("cluster: process exited")

// ErrStopTimeout is wrapped by Stop when the process outlived its timeout
// after SIGTERM (it was then killed).
var ErrStopTimeout = errors.New("cluster: process did not exit after SIGTERM")

// MarkerPrefix starts the lines the harness itself writes into a process's
// output (one per start, naming the command). Waits for output never match
// them: their command lines hold temporary paths, and those hold test names.
const MarkerPrefix = "=== cluster: "

// ProcessConfig says how to run a child process.
type ProcessConfig struct {
	Name string   // for messages and the start marker, e.g. "broker 1 127.0.0.1:9092"
	Path string   // the executable
	Args []string // arguments after the executable
	Env  []string // KEY=VALUE added to this process's environment
	Dir  string   // working directory; empty: the current one
	// LogFile, when set, also receives all output (appended, created if
	// missing), every run in turn, for people to read after a long run.
	LogFile string
	// MaxOutput bounds the output kept in memory, in bytes (0: no bound).
	// Beyond it later output is dropped from memory (the head, with the
	// startup lines, stays; LogFile still gets everything) and waits for
	// output no longer see new lines.
	MaxOutput int
	// OwnProcessGroup starts the process in a new process group, and Kill,
	// Pause and Resume then signal the whole group: for commands that start
	// children of their own (a shell script, `go run`).
	OwnProcessGroup bool
	// CPUs, when set, confines the process to these CPUs from its first instruction (every
	// thread and child it makes inherits them; a Go program sizes GOMAXPROCS to them).
	CPUs []int
}

// Process is a child process that can be stopped, killed, paused, resumed
// and started again with the same command. Its stdout and stderr go, in the
// order written, to one goroutine-safe buffer kept across runs (and to
// LogFile). Safe for concurrent use.
type Process struct {
	cfg ProcessConfig
	out *output

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // of the current run; closed once it exited and its output is in
	state  *os.ProcessState
	err    error // Wait's error of the last run that ended
	paused bool
	starts int
}

// StartProcess starts cfg.Path. It returns once the process is started; use
// WaitFor or WaitOutput for readiness.
func StartProcess(cfg ProcessConfig) (*Process, error) {
	if cfg.Name == "" {
		cfg.Name = cfg.Path
	}
	p := &Process{cfg: cfg, out: newOutput(cfg.MaxOutput)}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// forker starts every child from one OS thread that never ends. The parent-death signal
// fires when the thread that forked the child ends, not the process, and a Go thread ends
// when a goroutine locked to it returns: a child started from any other thread could be
// killed in the middle of a test.
var forker = sync.OnceValue(func() chan<- func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the process
		for f := range ch {
			f()
		}
	}()
	return ch
})

// startFromForker starts cmd on the forker thread, confined to cpus when there are any (a
// child inherits the affinity of the thread that forked it).
func startFromForker(cmd *exec.Cmd, cpus []int) error {
	done := make(chan error, 1)
	forker() <- func() {
		if len(cpus) == 0 {
			done <- cmd.Start()
			return
		}
		var old, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			done <- fmt.Errorf("cpu affinity: %w", err)
			return
		}
		for _, c := range cpus {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- fmt.Errorf("confine to cpus %v: %w", cpus, err)
			return
		}
		err := cmd.Start()
		if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
			// The thread would fork every later child confined: refuse to go on.
			panic(fmt.Sprintf("cluster: restoring the forker's cpu affinity: %v", rerr))
		}
		done <- err
	}
	return <-done
}

// Restart starts the command again (same arguments, environment, output
// buffer). The previous run must have ended: use Stop or Kill first.
func (p *Process) Restart() error {
	if p.Running() {
		return fmt.Errorf("cluster: restart %s: still running", p.Name())
	}
	return p.start()
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts++
	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Env = append(os.Environ(), p.cfg.Env...)
	cmd.Dir = p.cfg.Dir
	// One writer for both streams: exec then uses one pipe, so lines of
	// stdout and stderr are not torn apart from each other.
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// A grandchild that keeps the pipe open must not keep Wait (and every
	// wait for exit) hanging after the process itself is gone.
	cmd.WaitDelay = 5 * time.Second
	// A test that panics or times out exits without its cleanups: the kernel kills the
	// children it leaves (brokers holding ports, CPU and data directories) instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: p.cfg.OwnProcessGroup, Pdeathsig: syscall.SIGKILL}
	var logFile *os.File
	if p.cfg.LogFile != "" {
		f, err := os.OpenFile(p.cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("cluster: %s: log file: %w", p.cfg.Name, err)
		}
		logFile = f
	}
	p.out.setFile(logFile)
	fmt.Fprintf(p.out, "%sstart #%d of %s: %s %s\n", MarkerPrefix, p.starts, p.cfg.Name, p.cfg.Path, strings.Join(p.cfg.Args, " "))
	if err := startFromForker(cmd, p.cfg.CPUs); err != nil {
		p.out.setFile(nil)
		if logFile != nil {
			logFile.Close()
		}
		return fmt.Errorf("cluster: start %s: %w", p.cfg.Name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.paused, p.state, p.err = cmd, exited, false, nil, nil
	go func() {
		err := cmd.Wait()
		p.out.setFile(nil)
		if logFile != nil {
			logFile.Close()
		}
		p.mu.Lock()
		p.state, p.err = cmd.ProcessState, err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Name is the name given in the config.
func (p *Process) Name() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg.Name
}

// setCommand changes the name and arguments the next Restart uses (a
// broker whose address was picked again).
func (p *Process) setCommand(name string, args []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg.Name, p.cfg.Args = name, args
}

// Pid is the process id of the current (or last) run.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Exited is closed once the current run has exited and all its output is
// in the buffer.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Running reports whether the current run has not exited (a paused process
// is running).
func (p *Process) Running() bool {
	select {
	case <-p.Exited():
		return false
	default:
		return true
	}
}

// ExitErr is what Wait said about the last run that ended: nil for exit
// status 0 (and while running), an *exec.ExitError otherwise.
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// ExitCode is the exit status of the last run that ended; -1 while running
// or when a signal ended it.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// Wait waits until the current run exits and returns ExitErr, or ctx's
// error first.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.Exited():
		return p.ExitErr()
	case <-ctx.Done():
		return fmt.Errorf("cluster: waiting for %s to exit: %w", p.Name(), ctx.Err())
	}
}

// Signal sends sig to the process (not its group).
func (p *Process) Signal(sig os.Signal) error {
	p.mu.Lock()
	proc := p.cmd.Process
	p.mu.Unlock()
	return proc.Signal(sig)
}

// signalAll sends sig to the process, or to its whole group with
// OwnProcessGroup. A process that already exited is no error.
func (p *Process) signalAll(sig syscall.Signal) error {
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	if p.cfg.OwnProcessGroup {
		pid = -pid
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("cluster: %v to %s: %w", sig, p.Name(), err)
	}
	return nil
}

// Stop sends SIGTERM (and SIGCONT, should the process be paused, so that it
// can act on it) and waits up to timeout for it to exit; then it kills it
// and returns an error wrapping ErrStopTimeout. An exit status other than 0
// is returned as an error too. A process that is not running is no error.
func (p *Process) Stop(timeout time.Duration) error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("cluster: SIGTERM to %s: %w", p.Name(), err)
	}
	if p.Paused() {
		if err := p.Resume(); err != nil {
			return err
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.Exited():
	case <-t.C:
		if err := p.Kill(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s still running %v after SIGTERM (killed)", ErrStopTimeout, p.Name(), timeout)
	}
	if err := p.ExitErr(); err != nil {
		return fmt.Errorf("cluster: %s exited with %w after SIGTERM", p.Name(), err)
	}
	return nil
}

// Kill sends SIGKILL (to the group with OwnProcessGroup) and waits until the
// process is gone. A process that is not running is no error.
func (p *Process) Kill() error {
	if !p.Running() {
		return nil
	}
	if err := p.signalAll(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.Exited()
	return nil
}

// Pause stops the process with SIGSTOP: it keeps its sockets and files but
// runs no more, as a process stalled by the scheduler, a swap storm or a
// debugger would.
func (p *Process) Pause() error {
	if err := p.signalAll(syscall.SIGSTOP); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = true
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	// kill(2) returns before the stop reaches every thread: until it has, a thread may still
	// answer a request. Return once each of the process's threads is stopped.
	return waitStopped(pid, 10*time.Second)
}

// waitStopped polls /proc until every thread of pid is stopped (state T), the process is gone,
// or timeout passes.
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return nil // gone (or no /proc): nothing left that could answer
		}
		stopped := true
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
			if err != nil {
				continue // the thread exited
			}
			// The state follows the command name, which is in parentheses and may hold spaces.
			if i := strings.LastIndexByte(string(b), ')'); i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: pid %d not stopped %v after SIGSTOP", pid, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues a paused process with SIGCONT.
func (p *Process) Resume() error {
	if err := p.signalAll(syscall.SIGCONT); err != nil {
		return err
	}
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	return nil
}

// Paused reports whether Pause was called on the current run without a
// Resume since.
func (p *Process) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// Output is everything the process wrote so far, over all runs, with one
// marker line before each run.
func (p *Process) Output() string { return p.out.String() }

// OutputLen is the length of Output now: pass it to WaitOutput to wait only
// for what is written from now on.
func (p *Process) OutputLen() int { return p.out.Len() }

// OutputTail is the last n bytes of Output (all of it if shorter).
func (p *Process) OutputTail(n int) string { return tail(p.out.String(), n) }

// WaitOutput waits until a line written at or after byte offset from (see
// OutputLen) contains substr.
func (p *Process) WaitOutput(ctx context.Context, from int, substr string) error {
	_, err := p.WaitLine(ctx, from, func(l string) bool { return strings.Contains(l, substr) })
	if err != nil {
		return fmt.Errorf("waiting for %q: %w", substr, err)
	}
	return nil
}

// WaitLine waits until match accepts a complete line written at or after
// byte offset from, and returns that line. It wakes on each write, not on a
// timer. The harness's own marker lines are skipped. It fails with an error
// wrapping ErrExited once the current run exits without such a line (the
// output is complete then), or with ctx's error.
func (p *Process) WaitLine(ctx context.Context, from int, match func(line string) bool) (string, error) {
	exited := p.Exited()
	for {
		text, changed := p.out.since(from)
		done := false
		select {
		case <-exited:
			done = true // every byte is in: a last line without newline counts too
		default:
		}
		for len(text) > 0 {
			i := strings.IndexByte(text, '\n')
			if i < 0 && !done {
				break
			}
			line := text
			if i >= 0 {
				line = text[:i]
			}
			if !strings.HasPrefix(line, MarkerPrefix) && match(line) {
				return line, nil
			}
			from += len(line) + 1
			text = text[min(len(line)+1, len(text)):]
		}
		if done {
			return "", fmt.Errorf("%s: %w (%v)", p.Name(), ErrExited, p.ExitErr())
		}
		select {
		case <-changed:
		case <-exited:
		case <-ctx.Done():
			return "", fmt.Errorf("%s: %w", p.Name(), ctx.Err())
		}
	}
}

// WaitFor polls cond (see Poll) until it returns nil. It gives up early,
// with an error wrapping ErrExited, when the current run exits: a condition
// on a dead process would only run into its deadline.
func (p *Process) WaitFor(ctx context.Context, cond func(context.Context) error) error {
	exited := p.Exited()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-exited:
			cancel(fmt.Errorf("%s: %w (%v)", p.Name(), ErrExited, p.ExitErr()))
		case <-ctx.Done():
		}
	}()
	err := Poll(ctx, cond)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrExited) {
		return fmt.Errorf("%w; last output:\n%s", cause, p.OutputTail(4<<10))
	}
	return err
}

// pollInterval is how long Poll sleeps between tries: short against the
// seconds a broker takes to start, long enough not to spin.
const pollInterval = 20 * time.Millisecond

// Poll calls cond until it returns nil, sleeping briefly between tries, and
// returns nil then; once ctx ends it returns ctx's error with cond's last
// error. This is how every wait in the harness is written: a condition with
// a deadline, never a sleep that hopes.
func Poll(ctx context.Context, cond func(context.Context) error) error {
	t := time.NewTimer(0)
	defer t.Stop()
	var last error
	for {
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
				return cause
			}
			if last == nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w (last try: %v)", ctx.Err(), last)
		case <-t.C:
		}
		if last = cond(ctx); last == nil {
			return nil
		}
		t.Reset(pollInterval)
	}
}

// output is the goroutine-safe buffer a process writes into. Every write
// wakes the waiters (changed is closed and replaced).
type output struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
	file    *os.File
	changed chan struct{}
}

func newOutput(max int) *output { return &output{max: max, changed: make(chan struct{})} }

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.file != nil {
		_, _ = o.file.Write(b) // a copy for people: a failing log file must not fail the process's writes
	}
	keep := b
	if o.max > 0 && len(o.buf)+len(b) > o.max {
		keep = b[:max(0, o.max-len(o.buf))]
		o.dropped += len(b) - len(keep)
	}
	o.buf = append(o.buf, keep...)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(b), nil
}

func (o *output) setFile(f *os.File) {
	o.mu.Lock()
	o.file = f
	o.mu.Unlock()
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.dropped > 0 {
		return string(o.buf) + fmt.Sprintf("\n%s%d bytes of output dropped beyond MaxOutput\n", MarkerPrefix, o.dropped)
	}
	return string(o.buf)
}

func (o *output) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.buf)
}

// since returns the output from offset from on, and a channel closed by the
// next write.
func (o *output) since(from int) (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf[min(from, len(o.buf)):]), o.changed
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
