package simnvml

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Hooks are the simulated node's kernel log, GPU reset and reboot, in the
// form the agent's options take them, so a simulated agent runs the same
// code as a real one.
type Hooks struct {
	KernelLog  func() (io.ReadCloser, error)
	KernelBoot func() (time.Time, error)
	ResetGPU   func(ctx context.Context, index int) (string, error)
	Reboot     func(ctx context.Context) (newBootID string, err error)
}

// Hooks returns the backend's hooks. A reboot whose new boot could not be
// kept in the state directory is still a reboot: log hears why.
func (b *Backend) Hooks(log *slog.Logger) Hooks {
	return Hooks{
		KernelLog:  func() (io.ReadCloser, error) { return b.KernelLog(), nil },
		KernelBoot: func() (time.Time, error) { return b.KernelBoot(), nil },
		ResetGPU: func(_ context.Context, i int) (string, error) {
			if err := b.ResetGPU(i); err != nil {
				return "", err
			}
			return fmt.Sprintf("GPU %d reset (simulated)", i), nil
		},
		Reboot: func(context.Context) (string, error) {
			if err := b.Reboot(); err != nil {
				log.Warn("simulated reboot: the new boot is not kept across agent restarts", "err", err)
			}
			return b.BootID(), nil
		},
	}
}
