package deploy

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/navarch/navarch/controlplane"
)

// commentedSetting matches a setting the example configs leave off: "#"
// straight before a key, or before the two spaces of a nested line.
// Prose comments are "# " and a word.
var commentedSetting = regexp.MustCompile(`(?m)^#([a-z_-]+:|  )`)

// everySettingOn turns every commented-out setting of an example config
// on, so that the values it shows are loaded too, not only its defaults.
func everySettingOn(b []byte) []byte {
	return commentedSetting.ReplaceAll(b, []byte("$1"))
}

// TestControlPlaneExampleConfigLoads loads deploy/config/controlplane.yaml
// through the control plane's own loader, as shipped and with every
// setting it shows turned on.
func TestControlPlaneExampleConfigLoads(t *testing.T) {
	shipped, err := os.ReadFile(filepath.Join("config", "controlplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"as-shipped", shipped},
		{"every-setting-on", everySettingOn(shipped)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "controlplane.yaml")
			if err := os.WriteFile(p, tt.body, 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := controlplane.LoadConfigFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Listen != "0.0.0.0:50051" {
				t.Errorf("listen %q: the packaged control plane serves agents on other machines", cfg.Listen)
			}
		})
	}
}

// TestControlPlaneExampleConfigShowsEverySetting: a key added to the
// control plane's config is added to the example, or this fails.
func TestControlPlaneExampleConfigShowsEverySetting(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("config", "controlplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(everySettingOn(b), &doc); err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	yamlKeys(doc, "", shown)
	want := map[string]bool{}
	configKeys(reflect.TypeFor[controlplane.Config](), "", want)
	for k := range want {
		// A map (labels, tags) is shown by any of its keys.
		if !shown[k] && !slices.ContainsFunc(slices.Collect(maps.Keys(shown)), func(s string) bool { return strings.HasPrefix(s, k+".") }) {
			t.Errorf("deploy/config/controlplane.yaml does not show %s", k)
		}
	}
	if len(want) < 40 {
		t.Fatalf("found only %d settings in controlplane.Config; the walk is broken", len(want))
	}
}

// yamlKeys adds the dotted path of every leaf of a decoded YAML document;
// the items of a list of mappings share their list's path.
func yamlKeys(v any, prefix string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			yamlKeys(c, prefix+k+".", out)
		}
	case []any:
		if len(v) > 0 && reflect.TypeOf(v[0]).Kind() == reflect.Map {
			for _, c := range v {
				yamlKeys(c, prefix, out)
			}
			return
		}
		out[strings.TrimSuffix(prefix, ".")] = true
	default:
		out[strings.TrimSuffix(prefix, ".")] = true
	}
}

// configKeys adds the dotted yaml path of every setting of a config
// struct. A type that decodes itself (a Duration) is one setting.
func configKeys(t reflect.Type, prefix string, out map[string]bool) {
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer || (ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct) {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(unmarshaler) {
			configKeys(ft, prefix+name+".", out)
			continue
		}
		out[prefix+name] = true
	}
}

// TestAgentExampleConfigShape: the agent's example is YAML whose keys are
// flag names, and shows the settings docs/install.md points to. The
// installed agent's own flags are checked against it in release/.
func TestAgentExampleConfigShape(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("config", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(everySettingOn(b), &doc); err != nil {
		t.Fatal(err)
	}
	for k := range doc {
		if strings.HasPrefix(k, "-") || strings.Contains(k, "_") || slices.Contains([]string{"config", "version"}, k) {
			t.Errorf("%s is not a setting: settings are the agent's flags without dashes", k)
		}
	}
	for _, k := range []string{"server", "ca-cert", "join-token", "scheduler", "slurm-node-name"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("deploy/config/agent.yaml does not show %s", k)
		}
	}
}
