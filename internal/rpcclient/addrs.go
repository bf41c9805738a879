package rpcclient

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ParseAddrs reads a server setting: a control plane's HOST:PORT, or the
// addresses of several control planes (a leader and its standbys) joined
// by commas, "cp-1:50051,cp-2:50051,cp-3:50051". Spaces around an
// address are dropped. The error names the address that is wrong.
func ParseAddrs(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("no server address: give HOST:PORT, or several joined by commas")
	}
	parts := strings.Split(list, ",")
	addrs := make([]string, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for i, p := range parts {
		addr := strings.TrimSpace(p)
		if err := checkAddr(addr); err != nil {
			if len(parts) > 1 {
				return nil, fmt.Errorf("server address %d of %d in %q: %w", i+1, len(parts), list, err)
			}
			return nil, err
		}
		if seen[addr] {
			return nil, fmt.Errorf("server address %q is given twice in %q", addr, list)
		}
		seen[addr] = true
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// checkAddr checks one HOST:PORT. An empty host is this machine, as
// Go's dialler reads it.
func checkAddr(addr string) error {
	if addr == "" {
		return errors.New("the address is empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("server address %q is not HOST:PORT", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("server address %q: the port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// Addrs is t.Addr read by ParseAddrs.
func (t Target) Addrs() ([]string, error) { return ParseAddrs(t.Addr) }
