package webhook

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// ReadSecret reads an endpoint's shared secret from path, trimmed of
// surrounding white space. A file the group or others may read is refused,
// as the control plane's other secrets are: the secret lets anyone forge
// events.
func ReadSecret(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o044 != 0 {
		return nil, fmt.Errorf("%s holds a webhook secret but its mode %04o lets others read it; run chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New(path + " holds no webhook secret")
	}
	return b, nil
}
