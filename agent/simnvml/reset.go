package simnvml

import (
	"errors"
	"fmt"
)

// Why ResetGPU refuses, for errors.Is.
var (
	// ErrGPULost: a GPU off the bus cannot be reset; only a reboot brings
	// it back.
	ErrGPULost = errors.New("GPU is lost; reboot the node")
	// ErrGPUInUse: the driver resets no GPU that compute processes use.
	ErrGPUInUse = errors.New("GPU is in use by compute processes; stop them first")
)

// ResetGPU resets GPU i as `nvidia-smi --gpu-reset -i i` does. It refuses a
// GPU that is lost (ErrGPULost) or that compute processes use
// (ErrGPUInUse). A reset clears the volatile ECC counts, applies a pending
// row remap and pending page retirements, sets the recovery action to none
// and stops held slowdowns (power brake, hardware slowdown); the GPU keeps
// its UUID and what it records for good.
func (b *Backend) ResetGPU(i int) error {
	if i < 0 || i >= len(b.devices) {
		return fmt.Errorf("reset GPU %d: the node has GPUs 0–%d", i, len(b.devices)-1)
	}
	d := b.devices[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost {
		return fmt.Errorf("reset GPU %d: %w", i, ErrGPULost)
	}
	if pids := d.livePIDs(); len(pids) > 0 {
		return fmt.Errorf("reset GPU %d: %w (pids %v)", i, ErrGPUInUse, pids)
	}
	d.reset()
	return nil
}
