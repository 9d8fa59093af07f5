package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The README's "Try it" block runs as written against a real server: every
// curl answers 2xx and every `go run .` command exits 0. Only the address
// (localhost:8080) and RUN_ID, taken from the start's answer, are filled in.
func TestREADME_TryItRunsAsWritten(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds := shellCommands(t, codeBlockAfter(t, string(readme), "## Try it"))
	dbPath := filepath.Join(t.TempDir(), "try.db")
	c := startChild(t, dbPath)
	defer c.kill(t)
	t.Setenv("DATABASE_URL", dbPath) // for the go run commands, run in process
	client := newClient()
	runID, served, ran := "", 0, 0
	for _, words := range cmds {
		for i := range words {
			words[i] = strings.ReplaceAll(words[i], "RUN_ID", runID)
		}
		switch {
		case len(words) >= 3 && words[0] == "PORT=8080" && words[1] == "go" && words[2] == "run":
			if words[3] != "." {
				t.Fatalf("the server is started with %q: go run takes the package, not a file", strings.Join(words, " "))
			}
		case words[0] == "curl":
			body := curl(t, client, c.addr, words[1:])
			if slices.Contains(words, "localhost:8080/v1/run") {
				runID = jsonField(t, body, "id")
			}
			served++
		case len(words) >= 3 && words[0] == "go" && words[1] == "run":
			if words[2] != "." {
				t.Fatalf("%q: go run takes the package, not a file", strings.Join(words, " "))
			}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), words[3:], &stdout, &stderr, nil); code != 0 {
				t.Fatalf("%q exited %d: %s%s", strings.Join(words, " "), code, stdout.String(), stderr.String())
			}
			if stdout.Len() == 0 {
				t.Fatalf("%q printed nothing", strings.Join(words, " "))
			}
			ran++
		default:
			t.Fatalf("the Try it block has a command the test does not know: %q", strings.Join(words, " "))
		}
	}
	if runID == "" || served < 5 || ran < 2 {
		t.Fatalf("the block started run %q, made %d requests and %d commands: its commands were not all found", runID, served, ran)
	}
}

// codeBlockAfter returns the first ```sh block after heading.
func codeBlockAfter(t *testing.T, doc, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("no %q heading", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("no sh block after %q", heading)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("the sh block after %q does not end", heading)
	}
	return block
}

// shellCommands splits a block of shell into commands of words, as sh
// would for what the README uses: single quotes (across lines), comments,
// and a trailing &.
func shellCommands(t *testing.T, block string) [][]string {
	t.Helper()
	var cmds [][]string
	var words []string
	var word strings.Builder
	inWord, quoted, comment := false, false, false
	endWord := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	for _, r := range block {
		switch {
		case comment:
			if r == '\n' {
				comment = false
				if len(words) > 0 {
					cmds, words = append(cmds, words), nil
				}
			}
		case quoted:
			if r == '\'' {
				quoted = false
			} else {
				word.WriteRune(r)
			}
		case r == '\'':
			quoted, inWord = true, true
		case r == '#' && !inWord:
			comment = true
		case r == ' ' || r == '\t':
			endWord()
		case r == '\n':
			endWord()
			if len(words) > 0 {
				cmds, words = append(cmds, words), nil
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatal("a quote in the block does not end")
	}
	endWord()
	if len(words) > 0 {
		cmds = append(cmds, words)
	}
	for i, w := range cmds {
		if w[len(w)-1] == "&" {
			cmds[i] = w[:len(w)-1]
		}
	}
	return cmds
}

// curl makes the request of curl's arguments (-X, -H, -d and the address,
// localhost:8080 standing for addr) and returns the body of its 2xx answer.
func curl(t *testing.T, client *http.Client, addr string, args []string) []byte {
	t.Helper()
	method, url, body := "GET", "", ""
	header := http.Header{}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-X":
			i++
			method = args[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(args[i], ":")
			header.Set(k, strings.TrimSpace(v))
		case "-d":
			i++
			body = args[i]
			if method == "GET" {
				method = "POST"
			}
		default:
			url = "http://" + strings.Replace(args[i], "localhost:8080", addr, 1)
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, got)
	}
	return got
}
