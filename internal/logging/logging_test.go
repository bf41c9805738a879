package logging

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"regexp"
	"testing"
)

// TestFlagsLogger logs a debug and an info record through the logger the
// flags build, and matches all that was written.
func TestFlagsLogger(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string // a regular expression for the whole output
		wantErr string
	}{
		{name: "defaults-text-at-info", want: `^time=\S+ level=INFO msg=kept node=n1\n$`},
		{name: "json", args: []string{"--log-format", "json"}, want: `^\{"time":"[^"]+","level":"INFO","msg":"kept","node":"n1"\}\n$`},
		{name: "text-at-debug", args: []string{"--log-level", "debug", "--log-format", "text"}, want: `^time=\S+ level=DEBUG msg=detail\ntime=\S+ level=INFO msg=kept node=n1\n$`},
		{name: "warn-hides-info", args: []string{"--log-level", "warn", "--log-format", "json"}, want: `^$`},
		{name: "unknown-format", args: []string{"--log-format", "xml"}, wantErr: `--log-format: "xml" is not text or json`},
		{name: "format-is-lower-case", args: []string{"--log-format", "JSON"}, wantErr: `--log-format: "JSON" is not text or json`},
		{name: "unknown-level", args: []string{"--log-level", "loud"}, wantErr: `--log-level: "loud" is not debug, info, warn or error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var f Flags
			f.Register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			log, err := f.Logger(&out)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("detail")
			log.Info("kept", "node", "n1")
			if !regexp.MustCompile(tt.want).MatchString(out.String()) {
				t.Fatalf("output %q does not match %s", out.String(), tt.want)
			}
		})
	}
}

// TestJSONIsOneObjectALine: a message with a newline stays on its line,
// so a log shipper reads one record a line.
func TestJSONIsOneObjectALine(t *testing.T) {
	var out bytes.Buffer
	New(&out, slog.LevelInfo, JSON).Warn("two\nlines", "err", "a\nb")
	lines := bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("%d lines: %q", len(lines), out.String())
	}
	var rec map[string]any
	if err := json.Unmarshal(lines[0], &rec); err != nil {
		t.Fatal(err)
	}
	if rec["msg"] != "two\nlines" || rec["err"] != "a\nb" || rec["level"] != "WARN" {
		t.Fatalf("record %v", rec)
	}
}

func TestRegisterKeepsGivenDefaults(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := Flags{Level: "warn", Format: "json"}
	f.Register(fs)
	if got := fs.Lookup("log-level").DefValue; got != "warn" {
		t.Fatalf("--log-level default %q", got)
	}
	if got := fs.Lookup("log-format").DefValue; got != "json" {
		t.Fatalf("--log-format default %q", got)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		level  string
		format string
		ok     bool
	}{
		{"debug-text", "debug", "text", true},
		{"error-json", "error", "json", true},
		{"upper-case-level", "WARN", "text", false},
		{"level-with-offset", "info+1", "text", false},
		{"warning", "warning", "text", false},
		{"empty-level", "", "text", false},
		{"empty-format", "info", "", false},
		{"logfmt", "info", "logfmt", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Flags{Level: tt.level, Format: tt.format}.Parse()
			if (err == nil) != tt.ok {
				t.Fatalf("error %v, want ok=%t", err, tt.ok)
			}
		})
	}
}
