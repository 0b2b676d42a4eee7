package scripttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `# A comment, then a case with arguments.
echo a=1 b  c=x=y
----
echo [a=1 b c=x=y]

# Input lines come before the separator.
sum
1
2
----
3


upper word
----
WORD
`

// handle echoes the arguments, sums the input lines or upper-cases a word.
func handle(d *TestData) string {
	switch d.Cmd {
	case "echo":
		var words []string
		for _, a := range d.CmdArgs {
			words = append(words, a.String())
		}
		return "echo [" + strings.Join(words, " ") + "]"
	case "sum":
		n := 0
		for _, l := range strings.Split(d.Input, "\n") {
			n += int(l[0] - '0')
		}
		return string(rune('0' + n))
	case "upper":
		return strings.ToUpper(d.CmdArgs[0].Key)
	}
	return "unknown " + d.Cmd
}

func TestParse(t *testing.T) {
	blocks, err := parse("s.txt", sample)
	if err != nil {
		t.Fatal(err)
	}
	var cases []*TestData
	for _, b := range blocks {
		if b.c != nil {
			cases = append(cases, b.c)
		}
	}
	if len(cases) != 3 {
		t.Fatalf("%d cases, want 3", len(cases))
	}
	echo := cases[0]
	if echo.Pos != "s.txt:2" || echo.Cmd != "echo" || len(echo.CmdArgs) != 3 {
		t.Fatalf("echo case: %+v", echo)
	}
	if v, ok := echo.Arg("c"); !ok || v != "x=y" {
		t.Fatalf("c=%q %v: a value keeps the '=' after the first", v, ok)
	}
	if v, ok := echo.Arg("b"); !ok || v != "" || echo.CmdArgs[1].HasVal {
		t.Fatalf("b: %q %v %+v", v, ok, echo.CmdArgs[1])
	}
	if _, ok := echo.Arg("nope"); ok {
		t.Fatal("an absent argument was found")
	}
	if cases[1].Input != "1\n2" || cases[1].Expected != "3" {
		t.Fatalf("sum case: %+v", cases[1])
	}
	if cases[2].Pos != "s.txt:14" || cases[2].Expected != "WORD" {
		t.Fatalf("upper case: %+v", cases[2])
	}
}

// TestRoundTrip: a script whose outputs match is written back byte for byte (blank lines,
// comments and the spacing of command lines included), and reports no difference.
func TestRoundTrip(t *testing.T) {
	out, diffs, err := runScript("s.txt", sample, handle)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Fatalf("differences in a matching script: %v", diffs)
	}
	if out != sample {
		t.Fatalf("rewritten script differs:\n%s\nwant:\n%s", out, sample)
	}
}

// TestMismatchAndRewrite: a wrong expectation and a case without any are both reported, and the
// rewritten script holds the handler's outputs.
func TestMismatchAndRewrite(t *testing.T) {
	script := "upper word\n----\nword\n\nupper new\n\n# c\nupper last\n"
	out, diffs, err := runScript("s.txt", script, handle)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 3 || !strings.Contains(diffs[0], "s.txt:1: upper word") || !strings.Contains(diffs[1], "s.txt:5") || !strings.Contains(diffs[2], "s.txt:8") {
		t.Fatalf("diffs: %q", diffs)
	}
	if want := "upper word\n----\nWORD\n\nupper new\n----\nNEW\n\n# c\nupper last\n----\nLAST\n"; out != want {
		t.Fatalf("rewritten:\n%q\nwant:\n%q", out, want)
	}
	// The rewritten script is stable: running it again changes nothing.
	again, diffs, err := runScript("s.txt", out, handle)
	if err != nil || len(diffs) != 0 || again != out {
		t.Fatalf("second run: %v %q %q", err, diffs, again)
	}
}

// TestEmptyOutput: a case whose output is empty survives a rewrite unchanged.
func TestEmptyOutput(t *testing.T) {
	script := "nothing\n----\n\nupper a\n----\nA\n"
	out, diffs, err := runScript("s.txt", script, func(d *TestData) string {
		if d.Cmd == "nothing" {
			return ""
		}
		return handle(d)
	})
	if err != nil || len(diffs) != 0 || out != script {
		t.Fatalf("%v %q\n%q", err, diffs, out)
	}
}

// TestBlankLineInOutputRefused: such an output could not be read back.
func TestBlankLineInOutputRefused(t *testing.T) {
	_, _, err := runScript("s.txt", "x\n----\n\n", func(*TestData) string { return "a\n\nb" })
	if err == nil || !strings.Contains(err.Error(), "blank line") {
		t.Fatalf("got %v", err)
	}
}

func TestSeparatorWithoutCommand(t *testing.T) {
	if _, err := parse("s.txt", "# c\n----\nx\n"); err == nil || !strings.Contains(err.Error(), "s.txt:2") {
		t.Fatalf("got %v", err)
	}
}

// TestRunAndWalk drives the exported entry points over a real file.
func TestRunAndWalk(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	var ran []string
	Walk(t, filepath.Join(dir, "*.txt"), func(t *testing.T, path string) {
		ran = append(ran, filepath.Base(path))
		Run(t, path, func(t *testing.T, d *TestData) string { return handle(d) })
	})
	if len(ran) != 1 || ran[0] != "a.txt" {
		t.Fatalf("walked %v", ran)
	}
}
