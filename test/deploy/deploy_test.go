// Package deploy checks what deploy/ ships: the systemd units pass `systemd-analyze verify`,
// and the Debian package (deploy/nfpm.yaml, as `make deb` builds it) installs with dpkg, runs
// a broker as its ringtail user, and removes cleanly. The package test changes the machine
// (a package, a system user), so it runs only as root with dpkg, on a machine without ringtail
// installed: CI's clean Debian. Elsewhere each test says why it skipped.
package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
)

// nfpm is the packager `make deb` runs (Makefile NFPM).
const nfpm = "github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2"

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.CleanupBinary()
	os.Exit(code)
}

// repoRoot is the repository's top directory (this package is test/deploy).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestUnitsVerify runs `systemd-analyze verify` on both units, with ExecStart pointing at the
// binary under test (verify checks that it exists and is executable).
func TestUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd): units not verified")
	}
	bin, err := cluster.Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, unit := range []string{"ringtail.service", "ringtail@.service"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", unit))
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.ReplaceAll(b, []byte("/usr/bin/ringtail"), []byte(bin))
		if err := os.WriteFile(filepath.Join(dir, unit), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A template is verified through an instance of it.
	for _, unit := range []string{"ringtail.service", "ringtail@1.service"} {
		out, err := exec.Command("systemd-analyze", "verify", filepath.Join(dir, unit)).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// buildDeb builds the package from deploy/nfpm.yaml with the binary under test, into dir.
// The config's relative sources are made absolute, so nothing is written in the repository.
func buildDeb(t *testing.T, bin, dir string) string {
	t.Helper()
	root := repoRoot(t)
	cfg, err := os.ReadFile(filepath.Join(root, "deploy", "nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, line := range strings.Split(string(cfg), "\n") {
		if k, v, ok := strings.Cut(line, "src: "); ok && !strings.HasPrefix(v, "/") {
			if v == "bin/ringtail" {
				v = bin
			} else {
				v = filepath.Join(root, v)
			}
			line = k + "src: " + v
		}
		if k, v, ok := strings.Cut(line, ": deploy/deb/"); ok {
			line = k + ": " + filepath.Join(root, "deploy", "deb", v)
		}
		lines = append(lines, line)
	}
	cfgPath := filepath.Join(dir, "nfpm.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to run nfpm with")
	}
	cmd := exec.Command(goBin, "run", nfpm, "package", "--config", cfgPath, "--packager", "deb", "--target", dir+"/")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RINGTAIL_DEB_VERSION=0.0.0+test", "RINGTAIL_DEB_ARCH="+goarch(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nfpm: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("nfpm made %v, want one .deb", debs)
	}
	return debs[0]
}

func goarch(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestDebPackage installs the package with dpkg, checks its files, conffile, user and data
// directory, runs a broker from it as the ringtail user, then removes and purges it.
func TestDebPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the package test installs a package and creates a system user (CI runs it as root)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg: not a Debian machine")
	}
	if exec.Command("dpkg-query", "-W", "ringtail").Run() == nil {
		t.Skip("a ringtail package is installed already: not touching it")
	}
	if _, err := os.Stat("/var/lib/ringtail"); err == nil {
		t.Skip("/var/lib/ringtail exists: a broker's data may live there; not touching it")
	}
	bin, err := cluster.Binary()
	if err != nil {
		t.Fatal(err)
	}
	deb := buildDeb(t, bin, t.TempDir())
	installed := false
	t.Cleanup(func() {
		if installed {
			exec.Command("dpkg", "--purge", "ringtail").Run()
		}
		os.RemoveAll("/var/lib/ringtail") // created by this test only (checked above)
	})
	run(t, "/", "dpkg", "-i", deb)
	installed = true

	// Files.
	for path, mode := range map[string]os.FileMode{
		"/usr/bin/ringtail":                     0o755,
		"/lib/systemd/system/ringtail.service":  0o644,
		"/lib/systemd/system/ringtail@.service": 0o644,
		"/etc/ringtail/ringtail.conf":           0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("installed file: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if out := run(t, "/", "/usr/bin/ringtail", "version"); !strings.HasPrefix(out, "ringtail ") {
		t.Errorf("ringtail version: %q", out)
	}
	if out := run(t, "/", "dpkg-query", "-W", "-f=${Conffiles}", "ringtail"); !strings.Contains(out, "/etc/ringtail/ringtail.conf") {
		t.Errorf("conffiles: %q, want /etc/ringtail/ringtail.conf", out)
	}

	// The user and its data directory.
	u, err := user.Lookup("ringtail")
	if err != nil {
		t.Fatalf("the postinst created no ringtail user: %v", err)
	}
	fi, err := os.Stat("/var/lib/ringtail")
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if strconv.Itoa(int(st.Uid)) != u.Uid || strconv.Itoa(int(st.Gid)) != u.Gid || fi.Mode().Perm() != 0o750 {
		t.Errorf("/var/lib/ringtail: uid %d gid %d mode %v, want ringtail (%s:%s) 0750", st.Uid, st.Gid, fi.Mode().Perm(), u.Uid, u.Gid)
	}

	// The installed broker runs as that user on the installed config (its data dir is
	// /var/lib/ringtail), on a free port, and stops cleanly on SIGTERM.
	addrs, err := cluster.FreeAddrs("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	proc, err := cluster.StartProcess(cluster.ProcessConfig{
		Name: "installed broker",
		Path: "setpriv",
		Args: []string{"--reuid", "ringtail", "--regid", "ringtail", "--init-groups", "--",
			"/usr/bin/ringtail", "serve", "--config", "/etc/ringtail/ringtail.conf", "--listen", addrs[0]},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := proc.WaitFor(ctx, func(ctx context.Context) error { return cluster.PingApiVersions(ctx, addrs[0]) }); err != nil {
		proc.Kill()
		t.Fatalf("the installed broker did not answer: %v\n%s", err, proc.OutputTail(4000))
	}
	if err := proc.Stop(30 * time.Second); err != nil {
		t.Fatalf("stopping the installed broker: %v\n%s", err, proc.OutputTail(4000))
	}
	if _, err := os.Stat("/var/lib/ringtail/logs"); err != nil {
		t.Errorf("the broker wrote no data under /var/lib/ringtail: %v", err)
	}

	// Remove: the program and units go, the conffile stays until purge.
	run(t, "/", "dpkg", "-r", "ringtail")
	for _, path := range []string{"/usr/bin/ringtail", "/lib/systemd/system/ringtail.service", "/lib/systemd/system/ringtail@.service"} {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s still there after dpkg -r", path)
		}
	}
	if _, err := os.Stat("/etc/ringtail/ringtail.conf"); err != nil {
		t.Errorf("dpkg -r removed the conffile: %v", err)
	}
	run(t, "/", "dpkg", "--purge", "ringtail")
	installed = false
	if _, err := os.Stat("/etc/ringtail/ringtail.conf"); err == nil {
		t.Errorf("the conffile is still there after dpkg --purge")
	}
}
