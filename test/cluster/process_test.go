package cluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sh starts a shell script as a Process, killed when the test ends.
func sh(t *testing.T, cfg ProcessConfig, script string) *Process {
	t.Helper()
	cfg.Path, cfg.Args = "/bin/sh", append([]string{"-c", script}, cfg.Args...)
	p, err := StartProcess(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	return p
}

// loop keeps a shell busy in short sleeps, so that it acts on signals soon.
const loop = "while :; do sleep 0.05; done"

// TestWaitLineSkipsMarkers: a wait matches the process's own lines, never
// the harness's start marker, even when its command line holds the word.
func TestWaitLineSkipsMarkers(t *testing.T) {
	p := sh(t, ProcessConfig{Name: "ready-named", Args: []string{"ready-in-args"}}, "echo starting; echo ready; "+loop)
	line, err := p.WaitLine(ctxT(t), 0, func(l string) bool { return strings.Contains(l, "ready") })
	if err != nil || line != "ready" {
		t.Fatalf("WaitLine: %q, %v; want the line %q", line, err, "ready")
	}
	if !strings.HasPrefix(p.Output(), MarkerPrefix+"start #1 of ready-named") {
		t.Fatalf("output does not start with the marker: %q", p.Output())
	}
}

// TestWaitGivesUpWhenTheProcessExits: waits for output and for a condition
// end with ErrExited, not at their deadline, and the exit status is kept.
func TestWaitGivesUpWhenTheProcessExits(t *testing.T) {
	p := sh(t, ProcessConfig{}, "echo bye; exit 3")
	err := p.WaitOutput(ctxT(t), 0, "never said")
	if !errors.Is(err, ErrExited) {
		t.Fatalf("WaitOutput: %v, want ErrExited", err)
	}
	if p.Running() || p.ExitCode() != 3 || p.ExitErr() == nil {
		t.Fatalf("running %v, exit code %d, exit error %v; want exited with 3", p.Running(), p.ExitCode(), p.ExitErr())
	}
	if !strings.Contains(p.Output(), "bye\n") {
		t.Fatalf("output lost: %q", p.Output())
	}
	err = p.WaitFor(ctxT(t), func(context.Context) error { return errors.New("not yet") })
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("WaitFor on an exited process: %v, want ErrExited with the output", err)
	}
	// A last line without a newline counts once the process has exited.
	q := sh(t, ProcessConfig{}, "printf 'no newline'")
	if err := q.WaitOutput(ctxT(t), 0, "no newline"); err != nil {
		t.Fatal(err)
	}
}

// TestWaitOutputFrom: an offset from OutputLen waits only for lines written
// after it.
func TestWaitOutputFrom(t *testing.T) {
	p := sh(t, ProcessConfig{}, `trap 'echo toggled' USR1; echo toggled; echo ready; `+loop)
	if err := p.WaitOutput(ctxT(t), 0, "ready"); err != nil {
		t.Fatal(err)
	}
	mark := p.OutputLen()
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput(ctxT(t), mark, "toggled"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(p.Output(), "\ntoggled\n"); n != 2 {
		t.Fatalf("%d toggled lines after one signal, want 2:\n%s", n, p.Output())
	}
}

// TestStop: SIGTERM and a clean exit; a process that ignores SIGTERM is
// killed after the timeout and reported; stopping a stopped one is no error.
func TestStop(t *testing.T) {
	p := sh(t, ProcessConfig{}, `trap 'echo got term; exit 0' TERM; echo ready; `+loop)
	if err := p.WaitOutput(ctxT(t), 0, "ready"); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !strings.Contains(p.Output(), "got term") || p.ExitCode() != 0 {
		t.Fatalf("exit %d, output %q", p.ExitCode(), p.Output())
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("Stop of a stopped process: %v", err)
	}

	q := sh(t, ProcessConfig{}, `trap '' TERM; echo ready; `+loop)
	if err := q.WaitOutput(ctxT(t), 0, "ready"); err != nil {
		t.Fatal(err)
	}
	if err := q.Stop(100 * time.Millisecond); !errors.Is(err, ErrStopTimeout) {
		t.Fatalf("Stop of a process ignoring SIGTERM: %v, want ErrStopTimeout", err)
	}
	if q.Running() {
		t.Fatal("still running after Stop gave up")
	}

	r := sh(t, ProcessConfig{}, `trap 'exit 4' TERM; echo ready; `+loop)
	if err := r.WaitOutput(ctxT(t), 0, "ready"); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(10 * time.Second); err == nil || errors.Is(err, ErrStopTimeout) {
		t.Fatalf("Stop of a process exiting 4: %v, want an exit error", err)
	}
}

// procState is the state letter of /proc/<pid>/stat (R, S, T, Z…), "" once
// the process is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

func waitState(t *testing.T, pid int, want func(string) bool, what string) {
	t.Helper()
	err := Poll(ctxT(t), func(context.Context) error {
		if s := procState(pid); !want(s) {
			return errors.New("state " + s)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pid %d never %s: %v", pid, what, err)
	}
}

// TestPauseResumeKill: SIGSTOP stops the process (state T), SIGCONT lets it
// run, Kill ends a paused one, and Stop resumes a paused one so it can
// handle SIGTERM.
func TestPauseResumeKill(t *testing.T) {
	p := sh(t, ProcessConfig{}, `trap 'exit 0' TERM; echo ready; `+loop)
	if err := p.WaitOutput(ctxT(t), 0, "ready"); err != nil {
		t.Fatal(err)
	}
	pid := p.Pid()
	stopped := func(s string) bool { return s == "T" }
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, stopped, "stopped")
	if !p.Paused() || !p.Running() {
		t.Fatalf("paused %v running %v, want both", p.Paused(), p.Running())
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, func(s string) bool { return s != "T" }, "resumed")
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	waitState(t, pid, stopped, "stopped again")
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatalf("Stop of a paused process: %v", err)
	}

	q := sh(t, ProcessConfig{}, `echo ready; `+loop)
	if err := q.WaitOutput(ctxT(t), 0, "ready"); err != nil {
		t.Fatal(err)
	}
	if err := q.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := q.Kill(); err != nil || q.Running() {
		t.Fatalf("Kill of a paused process: %v, running %v", err, q.Running())
	}
	if err := q.Kill(); err != nil {
		t.Fatalf("Kill of a dead process: %v", err)
	}
}

// TestRestart: the same command runs again into the same output; a running
// process refuses.
func TestRestart(t *testing.T) {
	p := sh(t, ProcessConfig{}, `echo "run $$"; `+loop)
	if err := p.WaitOutput(ctxT(t), 0, "run "); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(); err == nil {
		t.Fatal("Restart of a running process succeeded")
	}
	first := p.Pid()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	mark := p.OutputLen()
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitOutput(ctxT(t), mark, "run "+strconv.Itoa(p.Pid())); err != nil {
		t.Fatal(err)
	}
	if p.Pid() == first || strings.Count(p.Output(), MarkerPrefix) != 2 {
		t.Fatalf("pid %d (first %d), output:\n%s", p.Pid(), first, p.Output())
	}
}

// TestProcessGroupKill: with OwnProcessGroup, Kill takes the children too.
func TestProcessGroupKill(t *testing.T) {
	p := sh(t, ProcessConfig{OwnProcessGroup: true}, `sleep 1000 & echo "child $!"; wait`)
	line, err := p.WaitLine(ctxT(t), 0, func(l string) bool { return strings.HasPrefix(l, "child ") })
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimPrefix(line, "child "))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	waitState(t, child, func(s string) bool { return s == "" || s == "Z" }, "gone")
}

// TestLogFileAndMaxOutput: the log file gets every run's output in full;
// memory keeps the head up to MaxOutput.
func TestLogFileAndMaxOutput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.log")
	p := sh(t, ProcessConfig{LogFile: file, MaxOutput: 200}, `i=0; while [ $i -lt 100 ]; do echo "line $i"; i=$((i+1)); done`)
	if err := p.Wait(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "line 99\n"); n != 2 {
		t.Fatalf("log file holds %d complete runs, want 2:\n%s", n, b)
	}
	if p.OutputLen() != 200 || !strings.Contains(p.Output(), "line 0\n") || !strings.Contains(p.Output(), "dropped beyond MaxOutput") {
		t.Fatalf("in memory: %d bytes:\n%s", p.OutputLen(), p.Output())
	}
}

// TestPoll: the condition's last error comes with the deadline's.
func TestPoll(t *testing.T) {
	n := 0
	if err := Poll(ctxT(t), func(context.Context) error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Poll: %v after %d tries", err, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := Poll(ctx, func(context.Context) error { return errors.New("still down") })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still down") {
		t.Fatalf("Poll past its deadline: %v", err)
	}
}

// orphanEnv makes the test binary, run by TestChildrenDieWithTheTestProcess, start a child
// and die at once without any cleanup, as a test that panics or times out does.
const orphanEnv = "RINGTAIL_CLUSTER_ORPHAN_TEST"

// TestChildrenDieWithTheTestProcess: a test process that exits without its cleanups (a
// panic, a timeout) takes its children with it; they do not live on holding ports.
func TestChildrenDieWithTheTestProcess(t *testing.T) {
	if os.Getenv(orphanEnv) != "" {
		p, err := StartProcess(ProcessConfig{Path: "/bin/sleep", Args: []string{"1000"}})
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("child " + strconv.Itoa(p.Pid()) + "\n")
		os.Exit(0)
	}
	helper := exec.Command(os.Args[0], "-test.run=^TestChildrenDieWithTheTestProcess$")
	helper.Env = append(os.Environ(), orphanEnv+"=1")
	out, err := helper.CombinedOutput()
	if err != nil {
		t.Fatalf("the helper test process: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), "child ")
	pid, perr := strconv.Atoi(strings.TrimSpace(strings.SplitN(after, "\n", 2)[0]))
	if !ok || perr != nil {
		t.Fatalf("the helper printed no child pid: %q", out)
	}
	err = Poll(ctxT(t), func(context.Context) error {
		if alive(pid) {
			return errors.New("still running")
		}
		return nil
	})
	if err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the child %d outlived the test process that started it: %v", pid, err)
	}
}

// alive: pid exists and is not a zombie (a container's init may never reap it).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// TestProcessCPUs: a process started with CPUs runs on those only, and later processes are
// not confined by it (they may run where the test does).
func TestProcessCPUs(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs to tell a confined process from the others")
	}
	last := runtime.NumCPU() - 1
	pinned := sh(t, ProcessConfig{CPUs: []int{last}}, loop)
	free := sh(t, ProcessConfig{}, loop)
	if got := allowedCPUs(t, pinned.Pid()); got != strconv.Itoa(last) {
		t.Fatalf("confined process may run on CPUs %q, want %d", got, last)
	}
	if got, want := allowedCPUs(t, free.Pid()), allowedCPUs(t, os.Getpid()); got != want {
		t.Fatalf("process started after a confined one may run on CPUs %q, want %q", got, want)
	}
}

func allowedCPUs(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Cpus_allowed_list in /proc/%d/status", pid)
	return ""
}
