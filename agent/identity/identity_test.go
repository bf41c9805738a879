package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func heartbeat(t *testing.T, client nodev1.NodeServiceClient, nodeID string) error {
	t.Helper()
	_, err := client.Heartbeat(t.Context(), &nodev1.HeartbeatRequest{NodeId: nodeID})
	return err
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestJoinThenRestartWithoutToken(t *testing.T) {
	f := newFakeCP(t)
	dir := filepath.Join(t.TempDir(), "agent", "node-1")
	id, err := Open(dir)
	if err != nil {
		t.Fatalf("open a directory that does not exist yet: %v", err)
	}
	if id.Joined() || id.NodeID() != "" {
		t.Fatal("an empty directory holds an identity")
	}
	if _, err := id.Certificate(); err == nil {
		t.Fatal("a certificate before the join")
	}
	if err := id.Join(t.Context(), f.joinClient(t), "node-1", goodToken); err != nil {
		t.Fatal(err)
	}
	if !id.Joined() || id.NodeID() != "node-1" || !id.NotAfter().Equal(f.clock.Now().Add(certLife).Truncate(time.Second)) {
		t.Fatalf("joined %v as %q until %v", id.Joined(), id.NodeID(), id.NotAfter())
	}
	for path, want := range map[string]os.FileMode{
		dir: 0o700, filepath.Join(dir, "key.pem"): 0o600, filepath.Join(dir, "cert.pem"): 0o644, id.CAFile(): 0o644,
	} {
		if got := mode(t, path); got != want {
			t.Errorf("%s is %o, want %o", path, got, want)
		}
	}
	if !pemCertificate(t, id.CAFile()).Equal(f.caCert) {
		t.Fatal("ca.crt is not the CA the control plane gave")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if bytes.Contains(b, []byte(goodToken)) {
			t.Fatalf("%s keeps the join token", e.Name())
		}
	}
	if len(entries) != 3 {
		t.Fatalf("the state directory holds %d files, want key.pem, cert.pem and ca.crt", len(entries))
	}
	if err := heartbeat(t, f.nodeClient(t, id), "node-1"); err != nil {
		t.Fatalf("a call with the node certificate: %v", err)
	}

	restarted, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !restarted.Joined() || restarted.NodeID() != "node-1" {
		t.Fatal("a restart lost the identity")
	}
	if err := heartbeat(t, f.nodeClient(t, restarted), "node-1"); err != nil {
		t.Fatalf("a call after a restart: %v", err)
	}
	if joins, _, seen := f.state(); joins != 1 || len(seen) != 2 {
		t.Fatalf("%d joins and %d heartbeats, want one join and two heartbeats", joins, len(seen))
	}
	if err := heartbeat(t, f.nodeClient(t, restarted), "node-2"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("node-1's certificate acting for node-2: %v", err)
	}
}

// TestFailedJoinKeepsTheKey: a refused join writes no certificate, and the
// next join asks for the same key, the one the control plane will know.
func TestFailedJoinKeepsTheKey(t *testing.T) {
	f := newFakeCP(t)
	dir := t.TempDir()
	id, _ := Open(dir)
	err := id.Join(t.Context(), f.joinClient(t), "node-1", "join.wrong")
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong token: %v", err)
	}
	if id.Joined() {
		t.Fatal("joined with a wrong token")
	}
	if _, err := os.Stat(filepath.Join(dir, "cert.pem")); !os.IsNotExist(err) {
		t.Fatalf("cert.pem after a refused join: %v", err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	id, _ = Open(dir)
	if err := id.Join(t.Context(), f.joinClient(t), "node-1", goodToken); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "key.pem"))
	if !bytes.Equal(key, again) {
		t.Fatal("the key changed between joins")
	}
	if err := id.Join(t.Context(), f.joinClient(t), "node-1", goodToken); err != nil {
		t.Fatalf("joining again with the same key: %v", err)
	}

	other, _ := Open(t.TempDir())
	if err := other.Join(t.Context(), f.joinClient(t), "node-1", goodToken); status.Code(err) != codes.AlreadyExists || other.Joined() {
		t.Fatalf("a second machine claiming node-1: %v", err)
	}
	if err := id.Join(t.Context(), f.joinClient(t), "", goodToken); err == nil {
		t.Fatal("a join without a node id")
	}
}

func TestJoinRefusesWhatWasNotAskedFor(t *testing.T) {
	rows := []struct {
		name   string
		tamper func(f *fakeCP, cert *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, *x509.Certificate)
		want   string
	}{
		{"another-key", func(f *fakeCP, cert *x509.Certificate, _ crypto.PublicKey) (*x509.Certificate, *x509.Certificate) {
			tmpl := *cert
			tmpl.SerialNumber = nextSerial()
			return mustSign(f.t, &tmpl, f.caCert, newKey(f.t).Public(), f.caKey), f.caCert
		}, "not for this node's key"},
		{"another-node", func(f *fakeCP, cert *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, *x509.Certificate) {
			tmpl := *cert
			tmpl.SerialNumber, tmpl.Subject, tmpl.RawSubject = nextSerial(), pkix.Name{CommonName: "node-2"}, nil
			return mustSign(f.t, &tmpl, f.caCert, pub, f.caKey), f.caCert
		}, `for "node-2", not "node-1"`},
		{"another-ca", func(f *fakeCP, cert *x509.Certificate, _ crypto.PublicKey) (*x509.Certificate, *x509.Certificate) {
			other, _ := newCA(f.t, f.clock.Now())
			return cert, other
		}, "check the node certificate against the CA"},
		{"ca-not-a-ca", func(f *fakeCP, cert *x509.Certificate, _ crypto.PublicKey) (*x509.Certificate, *x509.Certificate) {
			return cert, cert
		}, "not a CA"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			f := newFakeCP(t)
			f.tamper = func(c *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, *x509.Certificate) {
				return row.tamper(f, c, pub)
			}
			dir := t.TempDir()
			id, _ := Open(dir)
			err := id.Join(t.Context(), f.joinClient(t), "node-1", goodToken)
			if err == nil || !strings.Contains(err.Error(), row.want) {
				t.Fatalf("got %v, want an error saying %q", err, row.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "cert.pem")); id.Joined() || !os.IsNotExist(err) {
				t.Fatal("kept a certificate it did not ask for")
			}
		})
	}
}

func TestOpenRefusesAnInconsistentIdentity(t *testing.T) {
	f := newFakeCP(t)
	joined := t.TempDir()
	id, _ := Open(joined)
	if err := id.Join(t.Context(), f.joinClient(t), "node-1", goodToken); err != nil {
		t.Fatal(err)
	}
	copyFile := func(t *testing.T, dir, name string) {
		b, err := os.ReadFile(filepath.Join(joined, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	otherKey, err := encodeKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"certificate-without-key", func(t *testing.T, dir string) {
			copyFile(t, dir, "cert.pem")
			copyFile(t, dir, "ca.crt")
		}, "no key"},
		{"certificate-for-another-key", func(t *testing.T, dir string) {
			copyFile(t, dir, "cert.pem")
			copyFile(t, dir, "ca.crt")
			_ = os.WriteFile(filepath.Join(dir, "key.pem"), otherKey, 0o600)
		}, "not for this node's key"},
		{"key-not-pem", func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, "key.pem"), []byte("not a key"), 0o600)
		}, "no PEM PRIVATE KEY"},
		{"certificate-not-pem", func(t *testing.T, dir string) {
			copyFile(t, dir, "key.pem")
			_ = os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o644)
		}, "no PEM CERTIFICATE"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			dir := t.TempDir()
			row.setup(t, dir)
			if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), row.want) {
				t.Fatalf("got %v, want an error saying %q", err, row.want)
			}
		})
	}
	t.Run("key-alone", func(t *testing.T) {
		dir := t.TempDir()
		copyFile(t, dir, "key.pem")
		id, err := Open(dir)
		if err != nil || id.Joined() {
			t.Fatalf("a key from a join cut short: joined %v, %v", id != nil && id.Joined(), err)
		}
		if err := id.Join(t.Context(), f.joinClient(t), "node-1", goodToken); err != nil {
			t.Fatalf("joining with the key kept: %v", err)
		}
		cert, _ := id.Certificate()
		key, _ := readKey(filepath.Join(joined, "key.pem"))
		if !cert.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
			t.Fatal("the join did not use the key already there")
		}
	})
}
