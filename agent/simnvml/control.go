package simnvml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/faultspec"
)

// The control directory (Options.ControlDir) steers a running simulated
// node from outside, for demos and end-to-end tests: a file
// DIR/utilization holding a number 0–100 has every GPU's utilisation head
// for it, in place of the workload's phases; a file DIR/NODE.faults holds
// faults in the --sim-fault grammar, one per line, each applied once, as
// soon as its line appears.
const (
	// ControlInterval is how often the directory is read.
	ControlInterval = time.Second
	// UtilizationFile is the file, in the control directory, that steers
	// every GPU's utilisation.
	UtilizationFile = "utilization"
	// FaultsSuffix ends the name of the file, in the control directory,
	// that holds a node's faults: NODE.faults.
	FaultsSuffix = ".faults"
	// maxControlFile bounds what is read of a control file.
	maxControlFile = 1 << 20
)

// control follows a control directory. Only its goroutine uses it.
type control struct {
	b   *Backend
	dir string
	log *slog.Logger
	// steer is the utilisation in force, or nil while the phases run.
	steer *float32
	// applied counts, for each line of the faults file, how many of its
	// occurrences were taken: a line written twice is applied twice.
	applied map[string]int
	// complaint is the last complaint logged about each file, so that
	// one is not logged every second.
	complaint map[string]string
}

func newControl(b *Backend, dir string, log *slog.Logger) *control {
	return &control{b: b, dir: dir, log: log, applied: make(map[string]int), complaint: make(map[string]string)}
}

// follow reads the directory every ControlInterval until stop is closed.
func (c *control) follow(stop <-chan struct{}) {
	t := c.b.clock.NewTicker(ControlInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.Chan():
			c.check()
		}
	}
}

// check reads the directory once and applies what changed.
func (c *control) check() {
	c.utilization()
	c.faults()
}

// utilization steers the GPUs by the utilization file, or releases them
// when it is gone. A file that cannot be read, or holds no number 0–100,
// changes nothing; an empty one is taken for one being written.
func (c *control) utilization() {
	name := filepath.Join(c.dir, UtilizationFile)
	b, err := readControlFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		c.complaint[name] = ""
		if c.steer != nil {
			c.steer = nil
			c.b.Release()
			c.log.Info("simulated utilisation released: the workload's phases resume", "file", name)
		}
		return
	}
	if err != nil {
		c.complain(name, err.Error())
		return
	}
	text := strings.TrimSpace(string(b))
	if text == "" {
		return
	}
	v, err := strconv.ParseFloat(text, 32)
	if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
		c.complain(name, fmt.Sprintf("%q is not a utilisation in percent, 0–100", text))
		return
	}
	c.complaint[name] = ""
	p := float32(v)
	if c.steer != nil && *c.steer == p {
		return
	}
	c.steer = &p
	c.b.Steer(p)
	c.log.Info("simulated utilisation steered", "percent", p, "file", name)
}

// faults applies the lines of the node's faults file not applied before.
// Only lines ended by a newline count, so that a line being written is
// not taken half-written.
func (c *control) faults() {
	name := filepath.Join(c.dir, c.b.node+FaultsSuffix)
	b, err := readControlFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		c.complain(name, err.Error())
		return
	}
	c.complaint[name] = ""
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	} else {
		b = nil
	}
	seen := make(map[string]int)
	for i, raw := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		seen[line]++
		if seen[line] <= c.applied[line] {
			continue
		}
		c.applied[line] = seen[line]
		spec, err := faultspec.Parse(line)
		if err == nil && spec.GPU >= len(c.b.devices) {
			err = fmt.Errorf("GPU %d does not exist on a node with %d GPUs", spec.GPU, len(c.b.devices))
		}
		if err != nil {
			c.log.Warn("simulated fault not applied", "file", name, "line", i+1, "err", err)
			continue
		}
		c.b.Schedule(spec)
		c.log.Info("simulated fault applied", "file", name, "line", i+1, "fault", line)
	}
}

// complain logs what is wrong with a control file once, until it changes.
func (c *control) complain(name, what string) {
	if c.complaint[name] == what {
		return
	}
	c.complaint[name] = what
	c.log.Warn("simulation control file ignored", "file", name, "err", what)
}

// readControlFile reads up to maxControlFile bytes of a control file.
func readControlFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxControlFile))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return b, nil
}

// Steer has every GPU's utilisation head for percent (0–100), in place of
// the workload's phases, until Release. A GPU steered below the busy
// threshold ends its job, if it runs one, at its next read; one steered
// above it starts one, if the node runs jobs and takes work.
func (b *Backend) Steer(percent float32) {
	for _, d := range b.devices {
		d.changeLoad(func(now time.Time) { d.load.Steer(b.rng, now, percent) })
	}
}

// Release ends Steer: the workload's phases resume.
func (b *Backend) Release() {
	for _, d := range b.devices {
		d.changeLoad(func(now time.Time) { d.load.Release(b.rng, now) })
	}
}

// changeLoad changes the device's workload under the device's lock, then
// the backend's, which guards the random source.
func (d *Device) changeLoad(fn func(now time.Time)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.backend.mu.Lock()
	defer d.backend.mu.Unlock()
	fn(d.backend.clock.Now())
}
