package webhook

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/navarch/navarch/internal/secretfile"
)

// ReadSecret reads an endpoint's shared secret from path, trimmed of
// surrounding white space. A file the group or others may read is refused,
// as the control plane's other secrets are: the secret lets anyone forge
// events.
func ReadSecret(path string) ([]byte, error) {
	// Read through the file checked, so that it cannot be swapped between
	// the check and the read, nor hold the start up as a FIFO.
	b, err := secretfile.Read(path, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("read webhook secret: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New(path + " holds no webhook secret")
	}
	return b, nil
}
