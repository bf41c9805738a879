package tlsmux_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/navarch/navarch/controlplane/pki"
	"github.com/navarch/navarch/controlplane/tlsmux"
)

// TestSplit: over one port, a gRPC client (offering h2) reaches the gRPC
// server, whose handshake still sees its client certificate; an HTTP/1.1
// client gets the file; a client that says nothing, or garbage, holds
// up neither.
func TestSplit(t *testing.T) {
	ca, err := pki.Open(pki.Options{Dir: filepath.Join(t.TempDir(), "pki")})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS := ca.ServerTLS()
	serverTLS.ClientAuth = tls.VerifyClientCertIfGiven
	serverTLS.ClientCAs = ca.CAPool()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := tlsmux.New(lis, serverTLS, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/packages/a.deb" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "package bytes")
	}), nil)
	sawClientCert := make(chan bool, 1)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			ti, _ := p.AuthInfo.(credentials.TLSInfo)
			select {
			case sawClientCert <- len(ti.State.PeerCertificates) > 0:
			default:
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = mux.Serve() }()
	go func() { _ = srv.Serve(mux.GRPC()) }()
	t.Cleanup(func() { srv.Stop(); _ = mux.Close() })

	// A client that connects and says nothing, and one that sends
	// garbage, are left waiting or refused on their own.
	silent, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = garbage.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	defer garbage.Close()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM(t, ca))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// gRPC, with a client certificate the server's handshake must see.
	clientCert := nodeCert(t, ca)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC through the mux: %v %v", resp, err)
	}
	if !<-sawClientCert {
		t.Fatal("the gRPC server's handshake did not see the client certificate")
	}

	// HTTP/1.1, as curl --http1.1 and wget ask.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	for path, want := range map[string]int{"/packages/a.deb": 200, "/anything-else": 404} {
		r, err := hc.Get("https://" + lis.Addr().String() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if r.StatusCode != want || (want == 200 && string(body) != "package bytes") {
			t.Fatalf("GET %s: %d %q", path, r.StatusCode, body)
		}
	}
}

func caPEM(t *testing.T, ca *pki.Authority) []byte {
	t.Helper()
	return pemCert(ca.CACert())
}
