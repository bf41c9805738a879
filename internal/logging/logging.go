// Package logging owns how every Navarch binary builds its logger: the
// levels and formats --log-level and --log-format (and the control plane's
// log_level and log_format keys) accept, and the slog handler each format
// means, so that the binaries read and refuse them alike.
package logging

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// Format is how log records are written.
type Format string

const (
	// Text is slog's text handler: key=value pairs, for people.
	Text Format = "text"
	// JSON is slog's JSON handler: one object a line, for log shippers.
	JSON Format = "json"
)

// Defaults of the flags.
const (
	DefaultLevel  = "info"
	DefaultFormat = string(Text)
)

// ParseLevel reads a level as the flags and the configuration give it.
func ParseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// ParseFormat reads a format as the flags and the configuration give it.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Text, JSON:
		return f, nil
	}
	return "", fmt.Errorf("%q is not text or json", s)
}

// New returns a logger writing records at level and above to w in format.
func New(w io.Writer, level slog.Level, format Format) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == JSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Flags are a binary's --log-level and --log-format.
type Flags struct {
	Level  string
	Format string
}

// Register defines --log-level and --log-format on fs, defaulting to what
// f holds, or to DefaultLevel and DefaultFormat where it holds nothing.
func (f *Flags) Register(fs *flag.FlagSet) {
	if f.Level == "" {
		f.Level = DefaultLevel
	}
	if f.Format == "" {
		f.Format = DefaultFormat
	}
	fs.StringVar(&f.Level, "log-level", f.Level, "log `LEVEL`: debug, info, warn or error")
	fs.StringVar(&f.Format, "log-format", f.Format, "log `FORMAT`: text (key=value) or json (one object a line)")
}

// Parse reads the flags' values; its error names the flag at fault.
func (f Flags) Parse() (slog.Level, Format, error) {
	level, err := ParseLevel(f.Level)
	if err != nil {
		return 0, "", fmt.Errorf("--log-level: %w", err)
	}
	format, err := ParseFormat(f.Format)
	if err != nil {
		return 0, "", fmt.Errorf("--log-format: %w", err)
	}
	return level, format, nil
}

// Logger is New for the flags' values, writing to w; its error names the
// flag at fault.
func (f Flags) Logger(w io.Writer) (*slog.Logger, error) {
	level, format, err := f.Parse()
	if err != nil {
		return nil, err
	}
	return New(w, level, format), nil
}
