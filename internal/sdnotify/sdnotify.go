// Package sdnotify tells systemd how a service started with Type=notify is
// doing, through the socket systemd names in $NOTIFY_SOCKET (sd_notify(3)).
// Outside systemd the variable is unset and every call does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Send sends state lines, such as "READY=1", to systemd. It reports
// whether a socket was there to hear them; an error means it was and the
// send failed.
func Send(state string) (bool, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	addr := &net.UnixAddr{Name: path, Net: "unixgram"}
	if path[0] == '@' {
		// An abstract socket: a leading NUL, as systemd writes it with @.
		addr.Name = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return true, fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return true, fmt.Errorf("sd_notify: %w", err)
	}
	return true, nil
}

// Ready says the service is up and serving: `systemctl start` returns.
func Ready(status string) (bool, error) { return Send("READY=1\nSTATUS=" + status) }

// Stopping says the service is shutting down.
func Stopping() (bool, error) { return Send("STOPPING=1") }
