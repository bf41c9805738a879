package aws

import (
	"encoding/xml"
	"fmt"
	"slices"
	"testing"
	"time"
)

// The answers below follow the examples and response elements of EC2's
// API reference: each action's <ActionResponse> in EC2's namespace, a
// requestId, lists as …Set elements of <item>s, and elements the
// provider does not read around the ones it does.

// instanceItem is an instance as DescribeInstances and RunInstances write
// one, with the elements the provider skips.
func instanceItem(id, state, lifecycle, reason string, tags ...string) string {
	s := `<item>
  <instanceId>` + id + `</instanceId>
  <imageId>ami-0abcdef1234567890</imageId>
  <instanceState><code>16</code><name>` + state + `</name></instanceState>
  <privateDnsName>ip-10-0-0-157.ec2.internal</privateDnsName>
  <reason/>
  <productCodes/>
  <instanceType>p5.48xlarge</instanceType>
  <launchTime>2025-03-04T05:06:07.000Z</launchTime>
  <placement><availabilityZone>us-east-1a</availabilityZone><groupName/><tenancy>default</tenancy></placement>
  <monitoring><state>disabled</state></monitoring>
  <subnetId>subnet-a</subnetId>
  <groupSet><item><groupId>sg-1</groupId><groupName>gpu</groupName></item></groupSet>
  <blockDeviceMapping><item><deviceName>/dev/sda1</deviceName><ebs><volumeId>vol-1</volumeId><status>attached</status></ebs></item></blockDeviceMapping>
  <networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId><tagSet><item><key>eni-tag</key><value>not the instance's</value></item></tagSet></item></networkInterfaceSet>`
	if lifecycle != "" {
		s += "<instanceLifecycle>" + lifecycle + "</instanceLifecycle>"
	}
	if reason != "" {
		s += "<stateReason><code>Client.UserInitiatedShutdown</code><message>" + reason + "</message></stateReason>"
	}
	s += "<tagSet>"
	for i := 0; i+1 < len(tags); i += 2 {
		s += "<item><key>" + tags[i] + "</key><value>" + tags[i+1] + "</value></item>"
	}
	return s + "</tagSet></item>"
}

func response(action, body string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<` + action + `Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
  ` + body + `
</` + action + `Response>`
}

func decode[T any](t *testing.T, doc string) T {
	t.Helper()
	var out T
	if err := xml.Unmarshal([]byte(doc), &out); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return out
}

// brief is an instance as the tests compare it.
func brief(in ec2Instance) string {
	return fmt.Sprintf("%s %s %s %q %q %v", in.InstanceID, in.State, in.AvailabilityZone, in.InstanceLifecycle, in.StateReason, in.Tags)
}

func TestDecodeDescribeInstances(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		want      []string
		wantToken string
	}{
		{"empty", `<reservationSet/>`, nil, ""},
		{"reservation-without-instances", `<reservationSet><item><reservationId>r-1</reservationId><instancesSet/></item></reservationSet>`, nil, ""},
		{"two-reservations", `<reservationSet>
			<item><reservationId>r-1</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>` +
			instanceItem("i-1", "running", "", "", "navarch-node", "n-1", "navarch-pool", "train") +
			instanceItem("i-2", "pending", "spot", "") + `</instancesSet></item>
			<item><reservationId>r-2</reservationId><instancesSet>` +
			instanceItem("i-3", "terminated", "", "Client.UserInitiatedShutdown: User initiated shutdown", "Name", "n-3") + `</instancesSet></item>
			</reservationSet>`,
			[]string{
				`i-1 running us-east-1a "" "" [{navarch-node n-1} {navarch-pool train}]`,
				`i-2 pending us-east-1a "spot" "" []`,
				`i-3 terminated us-east-1a "" "Client.UserInitiatedShutdown: User initiated shutdown" [{Name n-3}]`,
			}, ""},
		{"next-token", `<reservationSet><item><instancesSet>` + instanceItem("i-1", "running", "", "") +
			`</instancesSet></item></reservationSet><nextToken>eyJ2IjoiMiIsImMiOiJ3In0=</nextToken>`,
			[]string{`i-1 running us-east-1a "" "" []`}, "eyJ2IjoiMiIsImMiOiJ3In0="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := decode[describeInstancesResponse](t, response("DescribeInstances", tt.body))
			var got []string
			for _, in := range out.instances() {
				got = append(got, brief(in))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("instances\n%q\nwant\n%q", got, tt.want)
			}
			if out.NextToken != tt.wantToken {
				t.Errorf("next token %q, want %q", out.NextToken, tt.wantToken)
			}
		})
	}
}

func TestInstanceTag(t *testing.T) {
	out := decode[runInstancesResponse](t, response("RunInstances",
		`<reservationId>r-1</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>`+
			instanceItem("i-1", "pending", "", "", "navarch-node", "n-1", "empty", "")+`</instancesSet>`))
	if len(out.Instances) != 1 {
		t.Fatalf("%d instances, want 1", len(out.Instances))
	}
	in := out.Instances[0]
	for key, want := range map[string]string{"navarch-node": "n-1", "empty": "", "navarch-pool": "", "eni-tag": ""} {
		if got := in.tag(key); got != want {
			t.Errorf("tag %s = %q, want %q", key, got, want)
		}
	}
}

func TestDecodeTerminateInstances(t *testing.T) {
	out := decode[terminateInstancesResponse](t, response("TerminateInstances", `<instancesSet>
		<item><instanceId>i-1</instanceId>
			<currentState><code>32</code><name>shutting-down</name></currentState>
			<previousState><code>16</code><name>running</name></previousState></item>
		</instancesSet>`))
	if len(out.Instances) != 1 || out.Instances[0].InstanceID != "i-1" || out.Instances[0].CurrentState != "shutting-down" {
		t.Errorf("decoded %+v", out)
	}
}

func TestDecodeSpotInstanceRequests(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		want      []string
		wantToken string
	}{
		{"empty", `<spotInstanceRequestSet/>`, nil, ""},
		{"marked-and-fulfilled", `<spotInstanceRequestSet>
			<item><spotInstanceRequestId>sir-1</spotInstanceRequestId><spotPrice>0.5</spotPrice><type>one-time</type><state>active</state>
				<status><code>marked-for-termination</code><updateTime>2025-03-04T05:05:37.000Z</updateTime><message>Spot Instance is marked for termination</message></status>
				<launchSpecification><imageId>ami-1</imageId><groupSet><item><groupId>sg-1</groupId></item></groupSet></launchSpecification>
				<instanceId>i-1</instanceId><tagSet/></item>
			<item><spotInstanceRequestId>sir-2</spotInstanceRequestId><status><code>fulfilled</code><message>Your spot request is fulfilled.</message></status><instanceId>i-2</instanceId></item>
			</spotInstanceRequestSet><nextToken>page-2</nextToken>`,
			[]string{
				"i-1 marked-for-termination Spot Instance is marked for termination 2025-03-04T05:05:37Z",
				"i-2 fulfilled Your spot request is fulfilled. none",
			}, "page-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := decode[describeSpotRequestsResponse](t, response("DescribeSpotInstanceRequests", tt.body))
			var got []string
			for _, r := range out.Requests {
				when := "none"
				if u, ok := r.updated(); ok {
					when = u.Format(time.RFC3339)
				}
				got = append(got, r.InstanceID+" "+r.Status.Code+" "+r.Status.Message+" "+when)
			}
			if !slices.Equal(got, tt.want) || out.NextToken != tt.wantToken {
				t.Errorf("requests %q, token %q; want %q, %q", got, out.NextToken, tt.want, tt.wantToken)
			}
		})
	}
}

func TestDecodeImages(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{"empty", `<imagesSet/>`, ""},
		{"ebs-image", `<imagesSet><item><imageId>ami-1</imageId><imageLocation>amazon/gpu</imageLocation><imageState>available</imageState>
			<blockDeviceMapping><item><deviceName>/dev/xvda</deviceName><ebs><snapshotId>snap-1</snapshotId></ebs></item></blockDeviceMapping>
			<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/sda1</rootDeviceName></item></imagesSet>`, "/dev/sda1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := decode[describeImagesResponse](t, response("DescribeImages", tt.body))
			got := ""
			if len(out.Images) > 0 {
				got = out.Images[0].RootDeviceName
			}
			if got != tt.want {
				t.Errorf("root device %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeInstanceTypes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantTypes int
		wantGPUs  int
	}{
		{"empty", `<instanceTypeSet/>`, 0, 0},
		{"no-gpus", `<instanceTypeSet><item><instanceType>m7i.large</instanceType><vCpuInfo><defaultVCpus>2</defaultVCpus></vCpuInfo></item></instanceTypeSet>`, 1, 0},
		{"eight-gpus", `<instanceTypeSet><item><instanceType>p5.48xlarge</instanceType><gpuInfo><gpus><item>
			<name>H100</name><manufacturer>NVIDIA</manufacturer><count>8</count><memoryInfo><sizeInMiB>81920</sizeInMiB></memoryInfo>
			</item></gpus><totalGpuMemoryInMiB>655360</totalGpuMemoryInMiB></gpuInfo></item></instanceTypeSet>`, 1, 8},
		{"two-kinds", `<instanceTypeSet><item><instanceType>x.mixed</instanceType><gpuInfo><gpus>
			<item><name>A</name><count>2</count></item><item><name>B</name><count>1</count></item>
			</gpus></gpuInfo></item></instanceTypeSet>`, 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := decode[describeInstanceTypesResponse](t, response("DescribeInstanceTypes", tt.body))
			if len(out.InstanceTypes) != tt.wantTypes {
				t.Fatalf("%d types, want %d", len(out.InstanceTypes), tt.wantTypes)
			}
			if tt.wantTypes > 0 && out.InstanceTypes[0].gpus() != tt.wantGPUs {
				t.Errorf("%d GPUs, want %d", out.InstanceTypes[0].gpus(), tt.wantGPUs)
			}
		})
	}
}
