package simnvml

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files the simulated node keeps in the agent's state directory, so that an
// agent restarted on the same boot finds the boot as a real agent finds
// /proc/sys/kernel/random/boot_id and /dev/kmsg.
const (
	bootIDFile    = "sim-boot-id"
	kernelLogFile = "sim-kmsg"
)

// BootID is the simulated node's boot id. It changes only on Reboot.
func (b *Backend) BootID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.bootID
}

// StateError says why the simulated boot is not kept in the state
// directory, or stopped being kept; nil while it is (or when Options gave
// no state directory). Without it, the boot id is derived from the node id
// and the seed instead.
func (b *Backend) StateError() error {
	b.mu.Lock()
	err := b.stateErr
	b.mu.Unlock()
	if err != nil {
		return err
	}
	return b.klog.failure()
}

// KernelLog opens the simulated node's kernel log, as a reader of
// /dev/kmsg: each Read returns one record, "PRIO,SEQ,USEC,FLAGS;TEXT\n",
// the records of this boot already written first, then each new one as it
// comes. Close ends a waiting Read; a reader opened before a Reboot reads
// io.EOF, since its boot is over.
func (b *Backend) KernelLog() io.ReadCloser { return b.klog.open() }

// KernelBoot is when the simulated node's current boot began: the time its
// kernel log's timestamps count from, as a real node's count from its boot.
func (b *Backend) KernelBoot() time.Time { return b.klog.began() }

// openBoot resumes the boot kept in the state directory or begins one. The
// caller holds no lock; nothing reads the backend yet.
func (b *Backend) openBoot(now time.Time) {
	if b.stateDir == "" {
		b.beginBoot(now, randomBootID(), "")
		return
	}
	resumeErr := b.resumeBoot(now)
	if resumeErr == nil {
		return
	}
	if errors.Is(resumeErr, errNoBoot) {
		resumeErr = nil
	}
	// A boot that cannot be resumed is over; a new one begins.
	if err := b.keepNewBoot(now); err != nil {
		b.stateErr = errors.Join(resumeErr, err)
		b.beginBoot(now, randomBootID(), "")
	}
}

// errNoBoot means the state directory keeps no boot to resume.
var errNoBoot = errors.New("no simulated boot kept")

// resumeBoot takes up the boot the state directory keeps, when its boot id
// and kernel log agree.
func (b *Backend) resumeBoot(now time.Time) error {
	idPath := filepath.Join(b.stateDir, bootIDFile)
	raw, err := os.ReadFile(idPath)
	if os.IsNotExist(err) {
		return errNoBoot
	}
	if err != nil {
		return fmt.Errorf("read the simulated boot id: %w", err)
	}
	id := strings.TrimSpace(string(raw))
	logPath := filepath.Join(b.stateDir, kernelLogFile)
	recs, ok, err := readRecords(logPath, id)
	if err != nil {
		return fmt.Errorf("read the simulated kernel log: %w", err)
	}
	if id == "" || !ok {
		// A boot id without its log (a reboot cut short) cannot go on
		// without reusing sequence numbers: it is a new boot.
		return errNoBoot
	}
	// Kept whole again, so that a torn line or a long log does not outlive
	// this start.
	if err := writeFile(logPath, logContent(id, recs)); err != nil {
		return fmt.Errorf("keep the simulated kernel log: %w", err)
	}
	b.bootID = id
	b.klog.begin(now, logPath, recs)
	if st, err := os.Stat(idPath); err == nil && !st.ModTime().After(now) {
		// The boot id file was written when the boot began.
		b.klog.since(st.ModTime())
	}
	return nil
}

// keepNewBoot begins a boot with a new random id and keeps it: the kernel
// log first, then the id, so that a failure between them leaves an id
// whose log does not match, which is never resumed.
func (b *Backend) keepNewBoot(now time.Time) error {
	if err := os.MkdirAll(b.stateDir, 0o700); err != nil {
		return fmt.Errorf("keep the simulated boot: %w", err)
	}
	id := randomBootID()
	logPath := filepath.Join(b.stateDir, kernelLogFile)
	if err := writeFile(logPath, bootHeader(id)+"\n"); err != nil {
		return fmt.Errorf("keep the simulated kernel log: %w", err)
	}
	if err := writeFile(filepath.Join(b.stateDir, bootIDFile), id+"\n"); err != nil {
		return fmt.Errorf("keep the simulated boot id: %w", err)
	}
	b.beginBoot(now, id, logPath)
	return nil
}

// beginBoot starts boot id at now: an empty kernel log that first says
// what booted.
func (b *Backend) beginBoot(now time.Time, id, logPath string) {
	b.mu.Lock()
	b.bootID = id
	b.mu.Unlock()
	b.klog.begin(now, logPath, nil)
	b.klog.write(now, kernNotice, "Linux version 6.8.0-sim (navarch simulated node)")
	b.klog.write(now, kernInfo, "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  "+b.DriverVersion)
}

// Reboot reboots the simulated node: a new boot id, every GPU back on the
// bus (lost ones too) and idle, volatile counters and held conditions
// cleared, pending row remaps and page retirements applied, the recovery
// action none, and a new kernel log whose sequence starts again. The GPUs
// keep their UUIDs, and what the GPUs record for good (aggregate ECC
// counts, remapped rows, retired pages) stays. The node reboots even when
// the new boot cannot be kept in the state directory; the error says so,
// and the boot id is derived from then on.
func (b *Backend) Reboot() error {
	now := b.clock.Now()
	for _, d := range b.devices {
		d.mu.Lock()
		d.powerCycle()
		d.mu.Unlock()
	}
	b.mu.Lock()
	keep := b.stateDir != "" && b.stateErr == nil
	b.mu.Unlock()
	if keep {
		err := b.keepNewBoot(now)
		if err == nil {
			return nil
		}
		b.mu.Lock()
		b.stateErr = err
		b.mu.Unlock()
		b.beginBoot(now, randomBootID(), "")
		return fmt.Errorf("reboot: %w", err)
	}
	b.beginBoot(now, randomBootID(), "")
	return nil
}

// logContent is a kept kernel log: its boot, then its records.
func logContent(id string, recs []record) string {
	var s strings.Builder
	s.WriteString(bootHeader(id) + "\n")
	for _, r := range recs {
		s.WriteString(r.line)
	}
	return s.String()
}

// writeFile replaces path whole with content, readable by its owner only.
func writeFile(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
