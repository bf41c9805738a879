package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/navarch/navarch/internal/testutil"
)

// The files under test, from this package's directory.
const (
	alertRulesFile = "../deploy/prometheus/navarch-alerts.yml"
	alertTestsFile = "../deploy/prometheus/navarch-alerts.test.yml"
	scrapeConfig   = "../deploy/prometheus/prometheus.yml"
	dashboardFile  = "../deploy/grafana/navarch-fleet.json"
	observability  = "../docs/observability.md"
)

// contractMetrics are the series the control plane and the agent promise
// (issue 14's metric contract): the dashboard and the alerts may name
// these and nothing else.
var contractMetrics = map[string]string{
	// The control plane.
	"navarch_nodes":                        "gauge",
	"navarch_nodes_health":                 "gauge",
	"navarch_nodes_reachability":           "gauge",
	"navarch_gpus_health":                  "gauge",
	"navarch_node_health":                  "gauge",
	"navarch_health_events_total":          "counter",
	"navarch_faults_active":                "gauge",
	"navarch_commands_total":               "counter",
	"navarch_command_duration_seconds":     "histogram",
	"navarch_auto_cordons_total":           "counter",
	"navarch_breaker_tripped":              "gauge",
	"navarch_breaker_recent_auto_cordons":  "gauge",
	"navarch_breaker_window_seconds":       "gauge",
	"navarch_breaker_suppressed_cordons":   "gauge",
	"navarch_watchers":                     "gauge",
	"navarch_watch_queue_depth_max":        "gauge",
	"navarch_watch_resyncs_total":          "counter",
	"navarch_store_write_duration_seconds": "histogram",
	"navarch_store_write_failures_total":   "counter",
	"navarch_fleet_revision":               "gauge",
	"navarch_auth_refused_total":           "counter",
	// The agent: dcgm-exporter's names, then Navarch's own.
	"DCGM_FI_DEV_GPU_TEMP":                          "gauge",
	"DCGM_FI_DEV_MEMORY_TEMP":                       "gauge",
	"DCGM_FI_DEV_POWER_USAGE":                       "gauge",
	"DCGM_FI_DEV_GPU_UTIL":                          "gauge",
	"DCGM_FI_DEV_MEM_COPY_UTIL":                     "gauge",
	"DCGM_FI_DEV_FB_USED":                           "gauge",
	"DCGM_FI_DEV_FB_FREE":                           "gauge",
	"DCGM_FI_DEV_SM_CLOCK":                          "gauge",
	"DCGM_FI_DEV_MEM_CLOCK":                         "gauge",
	"DCGM_FI_DEV_XID_ERRORS":                        "gauge",
	"DCGM_FI_DEV_PCIE_REPLAY_COUNTER":               "gauge",
	"DCGM_FI_DEV_ECC_SBE_VOL_TOTAL":                 "gauge",
	"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL":                 "gauge",
	"DCGM_FI_DEV_ECC_SBE_AGG_TOTAL":                 "gauge",
	"DCGM_FI_DEV_ECC_DBE_AGG_TOTAL":                 "gauge",
	"DCGM_FI_DEV_RETIRED_SBE":                       "gauge",
	"DCGM_FI_DEV_RETIRED_DBE":                       "gauge",
	"DCGM_FI_DEV_RETIRED_PENDING":                   "gauge",
	"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS":       "gauge",
	"DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS":         "gauge",
	"DCGM_FI_DEV_ROW_REMAP_FAILURE":                 "gauge",
	"DCGM_FI_DEV_ROW_REMAP_PENDING":                 "gauge",
	"DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL": "gauge",
	"DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL":   "gauge",
	"DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL": "gauge",
	"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS":            "gauge",
	"navarch_gpu_nvlinks_up":                        "gauge",
	"navarch_gpu_health":                            "gauge",
	"navarch_gpu_xid_events_total":                  "counter",
	"navarch_gpu_xid_errors_total":                  "counter",
	"navarch_gpu_last_xid_timestamp_seconds":        "gauge",
	"navarch_agent_buffered_events":                 "gauge",
	"navarch_agent_dropped_events_total":            "counter",
	"navarch_agent_last_contact_timestamp_seconds":  "gauge",
	"navarch_agent_gpus":                            "gauge",
}

// contractPrefixes are families the contract names by prefix: client_golang's
// process and Go collectors and go-grpc-middleware's server metrics.
var contractPrefixes = []string{"process_", "go_", "grpc_server_"}

// inContract says whether a query may name metric: a contract series, a
// histogram's _bucket, _sum or _count, a prefixed family, or Prometheus'
// own up.
func inContract(metric string) bool {
	if _, ok := contractMetrics[metric]; ok || metric == "up" {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(metric, suffix); ok && contractMetrics[base] == "histogram" {
			return true
		}
	}
	for _, p := range contractPrefixes {
		if strings.HasPrefix(metric, p) {
			return true
		}
	}
	return false
}

// promqlWords are PromQL's aggregations and keywords: an identifier among
// them never names a metric.
var promqlWords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

// promqlGroupings take a parenthesised list of label names.
var promqlGroupings = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// promqlMetrics returns the metric names expr selects, sorted and once
// each: the identifiers outside strings, label matchers, ranges and
// grouping lists that are not functions, aggregations, keywords or
// Grafana variables. It is a lexer, not a parser, which is enough for the
// dashboard's and the rules' queries and keeps Prometheus' own parser out
// of the module.
func promqlMetrics(expr string) []string {
	found := map[string]bool{}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	skipString := func(i int) int {
		quote := expr[i]
		for i++; i < len(expr) && expr[i] != quote; i++ {
			if expr[i] == '\\' && quote != '`' {
				i++
			}
		}
		return i + 1
	}
	// skipBlock passes a block from open to its matching close, with the
	// strings inside it.
	skipBlock := func(i int, open, close byte) int {
		depth := 0
		for i < len(expr) {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				i = skipString(i)
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	nextNonSpace := func(i int) int {
		for i < len(expr) && (expr[i] == ' ' || expr[i] == '\t' || expr[i] == '\n') {
			i++
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			i = skipString(i)
		case c == '{':
			i = skipBlock(i, '{', '}')
		case c == '[':
			i = skipBlock(i, '[', ']')
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				i = skipBlock(i, '{', '}')
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			word, next := expr[start:i], nextNonSpace(i)
			switch {
			case promqlGroupings[word]:
				if next < len(expr) && expr[next] == '(' {
					i = skipBlock(next, '(', ')')
				}
			case promqlWords[word]:
			case next < len(expr) && expr[next] == '(':
				// A function.
			default:
				found[word] = true
			}
		default:
			i++
		}
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func TestPrometheusPromQLMetrics(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want []string
	}{
		{"selector", `navarch_node_health{node=~"a|b", job!="x"} >= 2`, []string{"navarch_node_health"}},
		{"aggregation-grouped-first", `histogram_quantile(0.95, sum by (le, type) (rate(navarch_command_duration_seconds_bucket[$__rate_interval])))`, []string{"navarch_command_duration_seconds_bucket"}},
		{"aggregation-grouped-last", `sum(rate(a_total[5m])) without (instance)`, []string{"a_total"}},
		{"vector-matching", `a / on(instance) group_left(gpu, UUID) b`, []string{"a", "b"}},
		{"time-and-numbers", `time() - navarch_agent_last_contact_timestamp_seconds > 1.2e2`, []string{"navarch_agent_last_contact_timestamp_seconds"}},
		{"offset-and-bool", `x offset 5m > bool 3`, []string{"x"}},
		{"strings-hide-words", `label_replace(up, "dst", "$1 by (x)", "src", "(.*)")`, []string{"up"}},
		{"once-each", `up{job="a"} == 0 or absent(up{job="a"})`, []string{"up"}},
		{"braces-in-matchers", `m{path="{x}", q='}'}`, []string{"m"}},
		{"grafana-variables", `DCGM_FI_DEV_GPU_TEMP{instance=~"$instance"} * ${scale}`, []string{"DCGM_FI_DEV_GPU_TEMP"}},
		{"several", `100 * DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)`, []string{"DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := promqlMetrics(tt.expr); !slices.Equal(got, tt.want) {
				t.Fatalf("promqlMetrics(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestPrometheusContract(t *testing.T) {
	tests := []struct {
		metric string
		want   bool
	}{
		{"navarch_nodes", true},
		{"navarch_command_duration_seconds_bucket", true},
		{"navarch_store_write_duration_seconds_count", true},
		{"navarch_nodes_bucket", false},
		{"grpc_server_handled_total", true},
		{"up", true},
		{"navarch_node_health_total", false},
		{"DCGM_FI_DEV_GPU_TEMPERATURE", false},
	}
	for _, tt := range tests {
		t.Run(tt.metric, func(t *testing.T) {
			if got := inContract(tt.metric); got != tt.want {
				t.Fatalf("inContract(%q) = %v, want %v", tt.metric, got, tt.want)
			}
		})
	}
}

func TestPrometheusDCGMExporterLint(t *testing.T) {
	tests := []struct {
		name string
		line string
		want bool
	}{
		{"dcgm-labels", "DCGM_FI_DEV_GPU_TEMP label names should be written in 'snake_case' not 'camelCase'", true},
		{"dcgm-labels-on-navarch-gpu-series", "navarch_gpu_health label names should be written in 'snake_case' not 'camelCase'", true},
		{"dcgm-counter-in-name", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'", true},
		{"dcgm-counter-suffix", `DCGM_FI_DEV_ECC_SBE_VOL_TOTAL counter metrics should have "_total" suffix`, false},
		{"navarch-counter-in-name", "navarch_retry_counter metric name should not include type 'counter'", false},
		{"navarch-counter-name", `navarch_agent_dropped_events counter metrics should have "_total" suffix`, false},
		{"navarch-labels", "navarch_nodes label names should be written in 'snake_case' not 'camelCase'", false},
		{"dcgm-other-problem", "DCGM_FI_DEV_GPU_TEMP no help text", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dcgmExporterLint(tt.line); got != tt.want {
				t.Fatalf("dcgmExporterLint(%q) = %v, want %v", tt.line, got, tt.want)
			}
		})
	}
}

// dashboardQueries returns every PromQL query of a Grafana dashboard by
// where it is: its panels' targets (rows' panels too) and its query
// variables. Grafana's label_values(METRIC, LABEL) counts as METRIC.
func dashboardQueries(t *testing.T, dash map[string]any) map[string]string {
	t.Helper()
	queries := map[string]string{}
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			panel := p.(map[string]any)
			targets, _ := panel["targets"].([]any)
			for _, tg := range targets {
				target := tg.(map[string]any)
				expr, _ := target["expr"].(string)
				if expr == "" {
					t.Errorf("panel %q target %v has no expr", panel["title"], target["refId"])
				}
				queries[fmt.Sprintf("panel %q target %v", panel["title"], target["refId"])] = expr
			}
			if nested, ok := panel["panels"].([]any); ok {
				walk(nested)
			}
		}
	}
	walk(dash["panels"].([]any))
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range dash["templating"].(map[string]any)["list"].([]any) {
		variable := v.(map[string]any)
		if variable["type"] != "query" {
			continue
		}
		var q string
		switch query := variable["query"].(type) {
		case string:
			q = query
		case map[string]any:
			q, _ = query["query"].(string)
		}
		if m := labelValues.FindStringSubmatch(q); m != nil {
			q = m[1]
		}
		queries[fmt.Sprintf("variable %q", variable["name"])] = q
	}
	return queries
}

// ruleExprs returns every rule's expression in a Prometheus rules file, by
// the rule's name.
func ruleExprs(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &file); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	exprs := map[string]string{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			exprs[r.Alert+r.Record] = r.Expr
		}
	}
	return exprs
}

func readDashboard(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("parse %s: %v", dashboardFile, err)
	}
	return dash
}

// TestPrometheusQueriesNameOnlyContractMetrics: a dashboard panel or an
// alert that names a series nobody exports shows nothing and never fires.
func TestPrometheusQueriesNameOnlyContractMetrics(t *testing.T) {
	dash := dashboardQueries(t, readDashboard(t))
	rules := ruleExprs(t, alertRulesFile)
	tests := []struct {
		name    string
		queries map[string]string
		// covers are metrics the file must use: what issue 14 asks it to
		// show or alert on.
		covers []string
	}{
		{"dashboard", dash, []string{
			"navarch_nodes", "navarch_nodes_health", "navarch_gpus_health", "navarch_node_health", "navarch_breaker_tripped",
			"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_UTIL", "navarch_health_events_total",
			"navarch_command_duration_seconds_bucket", "navarch_watchers", "navarch_watch_resyncs_total",
			"navarch_gpu_xid_events_total",
		}},
		{"alert-rules", rules, []string{
			"navarch_node_health", "navarch_breaker_tripped", "navarch_agent_last_contact_timestamp_seconds", "up",
			"navarch_agent_dropped_events_total", "navarch_watch_resyncs_total", "navarch_auth_refused_total",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.queries) == 0 {
				t.Fatal("no queries found")
			}
			used := map[string]bool{}
			for where, q := range tt.queries {
				names := promqlMetrics(q)
				if len(names) == 0 {
					t.Errorf("%s: %q names no metric", where, q)
				}
				for _, n := range names {
					used[n] = true
					if !inContract(n) {
						t.Errorf("%s: %q names %s, which is not in the metric contract", where, q, n)
					}
				}
			}
			for _, m := range tt.covers {
				if !used[m] {
					t.Errorf("no query uses %s", m)
				}
			}
		})
	}
}

// TestPrometheusDashboardDataSource: the dashboard imports into any
// Grafana because every query goes through its data source variable; a
// hard-coded uid would point at someone else's Prometheus.
func TestPrometheusDashboardDataSource(t *testing.T) {
	dash := readDashboard(t)
	if _, ok := dash["__inputs"]; ok {
		t.Error("the dashboard has __inputs: it should pick its data source with the variable, not at import")
	}
	var hasVariable bool
	for _, v := range dash["templating"].(map[string]any)["list"].([]any) {
		variable := v.(map[string]any)
		if variable["name"] == "datasource" && variable["type"] == "datasource" && variable["query"] == "prometheus" {
			hasVariable = true
		}
	}
	if !hasVariable {
		t.Fatal(`no "datasource" variable of type datasource for Prometheus`)
	}
	var refs int
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if ds, ok := v["datasource"]; ok {
				refs++
				ref, _ := ds.(map[string]any)
				// Grafana's built-in annotations have a data source of
				// their own.
				if ref["uid"] != "${datasource}" && ref["uid"] != "-- Grafana --" {
					t.Errorf("%s: data source %v, want uid ${datasource}", path, ds)
				}
			}
			for k, child := range v {
				walk(path+"."+k, child)
			}
		case []any:
			for i, child := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), child)
			}
		}
	}
	walk("dashboard", dash)
	if refs == 0 {
		t.Fatal("no data source references")
	}
}

// TestPrometheusAlertsExplained: every alert links to its own section of
// docs/observability.md, which says what to do about it.
func TestPrometheusAlertsExplained(t *testing.T) {
	doc, err := os.ReadFile(observability)
	if err != nil {
		t.Fatal(err)
	}
	for alert := range ruleExprs(t, alertRulesFile) {
		if !regexp.MustCompile(`(?m)^### ` + alert + `$`).Match(doc) {
			t.Errorf("docs/observability.md has no section \"### %s\"", alert)
		}
	}
}

// needTool returns the path of a Prometheus binary. CI must run the tests
// that need one; elsewhere they skip, naming the task that installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed, and CI runs this test: `go tool task prometheus` installs it", name)
	}
	t.Skipf("%s is not installed: `go tool task prometheus` installs it (Debian's prometheus package)", name)
	return ""
}

// TestPrometheusRulesAndConfig: promtool accepts the rules and the example
// configuration, and the rules' unit tests pass.
func TestPrometheusRulesAndConfig(t *testing.T) {
	promtool := needTool(t, "promtool")
	tests := []struct {
		name string
		args []string
	}{
		{"check-rules", []string{"check", "rules", filepath.Base(alertRulesFile)}},
		{"test-rules", []string{"test", "rules", filepath.Base(alertTestsFile)}},
		{"check-config", []string{"check", "config", filepath.Base(scrapeConfig)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(promtool, tt.args...)
			cmd.Dir = filepath.Dir(alertRulesFile)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
		})
	}
}

// startProcess runs a binary until the test ends, when it gets SIGTERM;
// its output is printed if the test failed. It runs with none of this
// machine's Navarch settings or state.
func startProcess(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NAVARCH_") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "XDG_STATE_HOME="+t.TempDir())
	logs := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", name, logs.String())
		}
	})
}

// httpGet returns the body of a 200 answer.
func httpGet(rawURL string) ([]byte, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(rawURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", rawURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", rawURL, resp.Status, body)
	}
	return body, nil
}

// sample is one series of an instant query's answer.
type sample struct {
	Metric map[string]string
	Value  float64
}

// prometheusAPI queries a running Prometheus over its HTTP API.
type prometheusAPI struct {
	t    *testing.T
	base string
	// last is the last answer to each question asked, shown when the
	// test fails.
	last map[string]string
}

func (p *prometheusAPI) get(path string, v any) error {
	body, err := httpGet(p.base + path)
	if err != nil {
		return err
	}
	var resp struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	if resp.Status != "success" {
		return fmt.Errorf("%s: %s", path, resp.Error)
	}
	return json.Unmarshal(resp.Data, v)
}

// query runs an instant query.
func (p *prometheusAPI) query(q string) ([]sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: a %s, not a vector", q, data.ResultType)
	}
	out := make([]sample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v: %w", q, r.Value[1], err)
		}
		out = append(out, sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}

// alert is one active alert from /api/v1/alerts.
type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

func (p *prometheusAPI) alerts() ([]alert, error) {
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	err := p.get("/api/v1/alerts", &data)
	return data.Alerts, err
}

// waitQuery polls query until ok holds for its answer.
func (p *prometheusAPI) waitQuery(what, q string, ok func([]sample) bool) []sample {
	p.t.Helper()
	var got []sample
	testutil.EventuallyWithin(p.t, 30*time.Second, what, func() bool {
		var err error
		got, err = p.query(q)
		p.last[what] = fmt.Sprintf("%s: %v %v", q, got, err)
		if err == nil && ok(got) {
			return true
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	return got
}

// byLabel returns each sample's value under its label's value.
func byLabel(samples []sample, label string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		out[s.Metric[label]] = s.Value
	}
	return out
}

// shortenFor returns the rules with every `for:` cut to d, and how many it
// cut. Only the waits change: the expressions, labels and annotations
// stay byte for byte those of the file Navarch ships.
func shortenFor(rules []byte, d string) ([]byte, int) {
	re := regexp.MustCompile(`(?m)^([ \t]+for:[ \t]*)\S+[ \t]*$`)
	n := len(re.FindAll(rules, -1))
	return re.ReplaceAll(rules, []byte("${1}"+d)), n
}

// TestPrometheusScrapesTheFleet runs the real Prometheus against a real
// control plane and two simulated agents, all binaries, with Navarch's
// alert rules, and reads what an operator would through its HTTP API.
func TestPrometheusScrapesTheFleet(t *testing.T) {
	prometheus := needTool(t, "prometheus")
	promtool := needTool(t, "promtool")
	cpBin := testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-controlplane")
	agentBin := testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent")
	dir := t.TempDir()

	// The control plane, with its metrics listener, on loopback.
	grpcAddr, cpMetrics := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cpConfig := filepath.Join(dir, "controlplane.yaml")
	writeFile(t, cpConfig, fmt.Sprintf(`listen: %s
data_dir: %s
insecure: true
agent_identities: false
heartbeat_interval: 200ms
health_report_interval: 500ms
stale_after: 2s
offline_after: 5s
metrics_listen: %s
`, grpcAddr, filepath.Join(dir, "data"), cpMetrics))
	startProcess(t, "navarch-controlplane", cpBin, "--config", cpConfig)
	testutil.EventuallyWithin(t, 30*time.Second, "the control plane ready", func() bool {
		_, err := httpGet("http://" + cpMetrics + "/readyz")
		return err == nil
	})

	// Two agents: node-a's GPU 1 falls off the bus (XID 79) two seconds in.
	agents := map[string]string{"node-a": testutil.FreeAddr(t), "node-b": testutil.FreeAddr(t)}
	for node, metrics := range agents {
		args := []string{"--server", grpcAddr, "--insecure", "--node-id", node, "--metrics-listen", metrics,
			"--simulate", "--gpus", "2", "--sim-idle", "--poll-interval", "200ms"}
		if node == "node-a" {
			args = append(args, "--sim-fault", "xid=79@gpu1+2s")
		}
		startProcess(t, node, agentBin, args...)
	}

	// Prometheus scrapes all three every second and evaluates the rules as
	// often. The rules are the shipped file with each `for:` shortened to
	// 1s so an alert fires within the test: the expressions are identical.
	shipped, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	rules, cut := shortenFor(shipped, "1s")
	if cut == 0 {
		t.Fatalf("%s has no `for:` to shorten", alertRulesFile)
	}
	testRules := filepath.Join(dir, "navarch-alerts.yml")
	writeFile(t, testRules, string(rules))
	if !maps.Equal(ruleExprs(t, testRules), ruleExprs(t, alertRulesFile)) {
		t.Fatal("shortening the rules' waits changed their expressions")
	}
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [navarch-alerts.yml]
scrape_configs:
  - job_name: navarch-controlplane
    static_configs: [{targets: [%q]}]
  - job_name: navarch-agent
    static_configs: [{targets: [%q, %q]}]
`, cpMetrics, agents["node-a"], agents["node-b"]))
	promAddr := testutil.FreeAddr(t)
	startProcess(t, "prometheus", prometheus,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr,
		"--log.level=warn")
	api := &prometheusAPI{t: t, base: "http://" + promAddr, last: map[string]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			for what, answer := range api.last {
				t.Logf("last answer for %s: %s", what, answer)
			}
		}
	})

	api.waitQuery("both nodes counted by lifecycle", `sum(navarch_nodes)`, func(s []sample) bool {
		return len(s) == 1 && s[0].Value == 2
	})
	api.waitQuery("node-a UNHEALTHY (3) and node-b HEALTHY (1)", `navarch_node_health`, func(s []sample) bool {
		h := byLabel(s, "node")
		return len(h) == 2 && h["node-a"] == 3 && h["node-b"] == 1
	})
	api.waitQuery("one node in each of HEALTHY and UNHEALTHY", `navarch_nodes_health{health=~"HEALTHY|UNHEALTHY"}`, func(s []sample) bool {
		h := byLabel(s, "health")
		return h["HEALTHY"] == 1 && h["UNHEALTHY"] == 1
	})
	api.waitQuery("the XID 79 counted under its code", `navarch_health_events_total{kind="xid", xid="79"}`, func(s []sample) bool {
		return len(s) == 1 && s[0].Value >= 1
	})
	api.waitQuery("node-a's agent counting the XID 79", fmt.Sprintf(`navarch_gpu_xid_errors_total{instance=%q, xid="79"}`, agents["node-a"]), func(s []sample) bool {
		return len(s) == 1 && s[0].Value >= 1 && s[0].Metric["gpu"] == "1"
	})
	api.waitQuery("every GPU's XIDs counted, at 0 where none came", "navarch_gpu_xid_events_total", func(s []sample) bool {
		per := map[string]float64{}
		for _, x := range s {
			per[x.Metric["instance"]+" GPU "+x.Metric["gpu"]] = x.Value
		}
		a, b := agents["node-a"], agents["node-b"]
		return len(per) == 4 && per[a+" GPU 0"] == 0 && per[a+" GPU 1"] >= 1 && per[b+" GPU 0"] == 0 && per[b+" GPU 1"] == 0
	})
	temps := api.waitQuery("both agents' GPU temperatures under dcgm-exporter's name", `DCGM_FI_DEV_GPU_TEMP`, func(s []sample) bool {
		per := map[string]int{}
		for _, x := range s {
			per[x.Metric["instance"]]++
		}
		return per[agents["node-a"]] >= 1 && per[agents["node-b"]] == 2
	})
	for _, s := range temps {
		for _, label := range []string{"gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id"} {
			if s.Metric[label] == "" {
				t.Errorf("DCGM_FI_DEV_GPU_TEMP %v lacks dcgm-exporter's label %s", s.Metric, label)
			}
		}
		if s.Value <= 0 || s.Value > 120 {
			t.Errorf("DCGM_FI_DEV_GPU_TEMP %v = %g °C", s.Metric, s.Value)
		}
	}

	var firing alert
	testutil.EventuallyWithin(t, 30*time.Second, "NavarchNodeUnhealthy firing for node-a", func() bool {
		alerts, err := api.alerts()
		api.last["alerts"] = fmt.Sprintf("%+v %v", alerts, err)
		for _, a := range alerts {
			if a.Labels["alertname"] == "NavarchNodeUnhealthy" && a.State == "firing" {
				firing = a
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
		return false
	})
	if firing.Labels["node"] != "node-a" || firing.Labels["severity"] != "warning" || !strings.Contains(firing.Annotations["summary"], "node-a") {
		t.Errorf("the firing alert: %+v", firing)
	}
	// Everything else is well: no alert about reaching the control plane,
	// the agents or the store fires.
	alerts, err := api.alerts()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if a.State == "firing" && a.Labels["alertname"] != "NavarchNodeUnhealthy" {
			t.Errorf("%s fires on a fleet with one unhealthy node: %+v", a.Labels["alertname"], a)
		}
	}

	// Every dashboard query is PromQL this Prometheus runs, once Grafana
	// has filled in its variables.
	grafana := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	for where, q := range dashboardQueries(t, readDashboard(t)) {
		if _, err := api.query(grafana.Replace(q)); err != nil {
			t.Errorf("the dashboard's %s: %v", where, err)
		}
	}

	// Both kinds of endpoint export every series of the contract, as the
	// type it promises, and pass Prometheus' own lint.
	endpoints := []struct{ name, addr string }{
		{"controlplane", cpMetrics}, {"agent", agents["node-a"]},
	}
	exported := map[string]string{}
	for _, e := range endpoints {
		body, err := httpGet("http://" + e.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(body)) {
			if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				exported[f[2]] = f[3]
			}
		}
		t.Run("promtool-check-metrics-"+e.name, func(t *testing.T) {
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = bytes.NewReader(body)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			// promtool exits 3 when it found lint problems, 1 when it
			// could not read the exposition at all.
			if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
				t.Fatalf("promtool check metrics on %s's /metrics: %v\n%s", e.name, err, out)
			}
			for line := range strings.Lines(string(out)) {
				if line = strings.TrimSpace(line); line != "" && !dcgmExporterLint(line) {
					t.Errorf("promtool check metrics on %s's /metrics: %s", e.name, line)
				}
			}
		})
	}
	for name, typ := range contractMetrics {
		if got, ok := exported[name]; !ok {
			t.Errorf("%s is in the contract but neither endpoint exports it", name)
		} else if got != typ {
			t.Errorf("%s is exported as a %s, and the contract says %s", name, got, typ)
		}
	}
}

// dcgmExporterLint says whether a complaint of promtool's lint is one that
// dcgm-exporter's own names and labels raise: the agent keeps them so that
// dashboards and alerts written for dcgm-exporter work unchanged. They are
// its modelName label, camelCase, on every per-GPU series, and the word
// COUNTER in DCGM_FI_DEV_PCIE_REPLAY_COUNTER.
func dcgmExporterLint(line string) bool {
	name, problem, _ := strings.Cut(line, " ")
	switch problem {
	case "label names should be written in 'snake_case' not 'camelCase'":
		return strings.HasPrefix(name, "DCGM_FI_DEV_") || strings.HasPrefix(name, "navarch_gpu_")
	case "metric name should not include type 'counter'":
		return strings.HasPrefix(name, "DCGM_FI_DEV_")
	}
	return false
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
