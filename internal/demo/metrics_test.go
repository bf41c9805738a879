package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/navarch/navarch/internal/rpcclient"
)

var metricsURLRE = regexp.MustCompile(`metrics (http://127\.0\.0\.1:\d+/metrics)`)

// TestDemoServesMetrics: the demo's control plane serves its metrics on
// loopback, at the address the demo prints.
func TestDemoServesMetrics(t *testing.T) {
	var out bytes.Buffer
	o := Options{Nodes: 1, GPUs: 1, DataDir: t.TempDir(), BinDir: binDir, Stdout: &out, Stderr: io.Discard}
	o.Console = func(ctx context.Context, _ rpcclient.Target, _ string) error {
		m := metricsURLRE.FindStringSubmatch(out.String())
		if m == nil {
			return fmt.Errorf("the demo printed no metrics address: %q", out.String())
		}
		resp, err := http.Get(m[1])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "navarch_nodes{") {
			return fmt.Errorf("GET %s: %d, no navarch_nodes in:\n%.2000s", m[1], resp.StatusCode, body)
		}
		return nil
	}
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}
