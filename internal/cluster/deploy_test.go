package cluster

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const repoRoot = "../.."

// roleTargets are serve's roles; a deployment file must name no other.
var roleTargets = []string{"gateway", "signer", "router", "ledger", "delivery"}

// TestDeployFilesParse parses every YAML file of the deployments, there
// being no cluster here to apply them to, and checks what each says of
// the topology.
func TestDeployFilesParse(t *testing.T) {
	files := []string{filepath.Join(repoRoot, "docker-compose.yml")}
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(path); !d.IsDir() && (ext == ".yml" || ext == ".yaml") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(strings.TrimPrefix(f, repoRoot+"/"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			n := 0
			for {
				var doc map[string]any
				err := dec.Decode(&doc)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("document %d: %v", n+1, err)
				}
				n++
				if strings.Contains(f, "kubernetes") {
					checkManifest(t, doc)
				}
			}
			if n == 0 {
				t.Fatal("no YAML document")
			}
		})
	}
}

func checkManifest(t *testing.T, doc map[string]any) {
	t.Helper()
	if doc["kind"] == "Kustomization" {
		for _, r := range doc["resources"].([]any) {
			if _, err := os.Stat(filepath.Join(repoRoot, "deploy", "kubernetes", r.(string))); err != nil {
				t.Errorf("kustomization resource: %v", err)
			}
		}
		return
	}
	meta, _ := doc["metadata"].(map[string]any)
	if doc["apiVersion"] == nil || doc["kind"] == nil || meta["name"] == nil {
		t.Errorf("manifest without apiVersion, kind or metadata.name: %v", doc)
		return
	}
	if doc["kind"] != "Deployment" {
		return
	}
	spec := doc["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	for _, c := range spec["containers"].([]any) {
		args, _ := c.(map[string]any)["args"].([]any)
		if len(args) != 2 || args[0] != "serve" {
			t.Errorf("%s: args %v, want serve --target=ROLE", meta["name"], args)
			continue
		}
		if role := strings.TrimPrefix(args[1].(string), "--target="); !slices.Contains(roleTargets, role) {
			t.Errorf("%s: unknown role %q", meta["name"], role)
		}
	}
}

// TestComposeTopology checks that docker-compose.yml runs what make
// cluster runs: three NATS servers, PostgreSQL, every role, Prometheus and
// Grafana.
func TestComposeTopology(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
			Deploy  struct {
				Replicas int `yaml:"replicas"`
			} `yaml:"deploy"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"nats-1", "nats-2", "nats-3", "postgres", "prometheus", "grafana"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	replicas := map[string]int{}
	for name, s := range c.Services {
		if len(s.Command) == 2 && s.Command[0] == "serve" {
			role := strings.TrimPrefix(s.Command[1], "--target=")
			if !slices.Contains(roleTargets, role) {
				t.Errorf("%s: unknown role %q", name, role)
			}
			replicas[role] += max(1, s.Deploy.Replicas)
		}
	}
	want := map[string]int{}
	for _, r := range roleList {
		want[r.target]++
	}
	for role, n := range want {
		if replicas[role] != n {
			t.Errorf("role %s: %d containers, make cluster runs %d", role, replicas[role], n)
		}
	}
}
