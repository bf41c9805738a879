package aws_test

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The fake takes only the parameters EC2's API reference documents for
// each action, named as the query API names them, and refuses any other
// as EC2 does (UnknownParameter). A parameter the provider misnamed would
// be refused here, not silently dropped: on a real EC2 a misnamed tag,
// metadata option or spot option launches an instance without it.

// nth is a list member's number in a parameter's name: 1, 2, …
const nth = `[1-9][0-9]*`

// filterParams are a Describe action's filters.
var filterParams = []string{`Filter\.` + nth + `\.Name`, `Filter\.` + nth + `\.Value\.` + nth}

// actionParams are the parameters each action takes, of those the
// provider could send, besides Action and Version.
var actionParams = map[string][]string{
	"RunInstances": {
		`ImageId`, `InstanceType`, `MinCount`, `MaxCount`, `SubnetId`, `SecurityGroupId\.` + nth,
		`UserData`, `ClientToken`, `KeyName`, `IamInstanceProfile\.(Arn|Name)`,
		`TagSpecification\.` + nth + `\.ResourceType`, `TagSpecification\.` + nth + `\.Tag\.` + nth + `\.(Key|Value)`,
		`MetadataOptions\.(HttpTokens|HttpEndpoint|HttpPutResponseHopLimit|InstanceMetadataTags)`,
		`BlockDeviceMapping\.` + nth + `\.DeviceName`,
		`BlockDeviceMapping\.` + nth + `\.Ebs\.(VolumeSize|VolumeType|DeleteOnTermination|Encrypted|Iops|Throughput)`,
		`InstanceMarketOptions\.MarketType`,
		`InstanceMarketOptions\.SpotOptions\.(SpotInstanceType|InstanceInterruptionBehavior|MaxPrice)`,
		`Placement\.AvailabilityZone`,
	},
	"DescribeInstances":            append([]string{`InstanceId\.` + nth, `MaxResults`, `NextToken`}, filterParams...),
	"TerminateInstances":           {`InstanceId\.` + nth},
	"DescribeSpotInstanceRequests": append([]string{`SpotInstanceRequestId\.` + nth, `MaxResults`, `NextToken`}, filterParams...),
	"DescribeImages":               append([]string{`ImageId\.` + nth, `Owner\.` + nth}, filterParams...),
	"DescribeInstanceTypes":        append([]string{`InstanceType\.` + nth, `MaxResults`, `NextToken`}, filterParams...),
}

// enumParams are the values EC2 takes for parameters with a fixed set.
var enumParams = map[*regexp.Regexp][]string{
	regexp.MustCompile(`^TagSpecification\.[0-9]+\.ResourceType$`):                           {"instance", "volume", "network-interface", "spot-instances-request"},
	regexp.MustCompile(`^MetadataOptions\.HttpTokens$`):                                      {"optional", "required"},
	regexp.MustCompile(`^MetadataOptions\.HttpEndpoint$`):                                    {"enabled", "disabled"},
	regexp.MustCompile(`^BlockDeviceMapping\.[0-9]+\.Ebs\.VolumeType$`):                      {"standard", "io1", "io2", "gp2", "gp3", "sc1", "st1"},
	regexp.MustCompile(`^BlockDeviceMapping\.[0-9]+\.Ebs\.DeleteOnTermination$`):             {"true", "false"},
	regexp.MustCompile(`^InstanceMarketOptions\.MarketType$`):                                {"spot", "capacity-block"},
	regexp.MustCompile(`^InstanceMarketOptions\.SpotOptions\.SpotInstanceType$`):             {"one-time", "persistent"},
	regexp.MustCompile(`^InstanceMarketOptions\.SpotOptions\.InstanceInterruptionBehavior$`): {"hibernate", "stop", "terminate"},
	regexp.MustCompile(`^(MinCount|MaxCount)$`):                                              {"1"},
}

var actionPatterns = func() map[string]*regexp.Regexp {
	out := map[string]*regexp.Regexp{}
	for action, params := range actionParams {
		out[action] = regexp.MustCompile(`^(` + strings.Join(params, "|") + `)$`)
	}
	return out
}()

// listMember matches a parameter's name up to each list member's number.
var listMember = regexp.MustCompile(`\.([0-9]+)(\.|$)`)

// checkParams checks a request's parameters as EC2 does: each a
// parameter of the action, each list numbered from 1 without a gap, each
// value one EC2 takes. It returns EC2's error code, or "".
func checkParams(action string, form url.Values) (code, msg string) {
	known, ok := actionPatterns[action]
	if !ok {
		return "InvalidAction", "The action " + action + " is not valid for this web service."
	}
	members := map[string]bool{}
	for name, values := range form {
		if name == "Action" || name == "Version" {
			continue
		}
		if !known.MatchString(name) {
			return "UnknownParameter", fmt.Sprintf("The parameter %s is not recognized", name)
		}
		if len(values) != 1 {
			return "InvalidParameterValue", fmt.Sprintf("The parameter %s is given %d times", name, len(values))
		}
		for re, allowed := range enumParams {
			if re.MatchString(name) && !slices.Contains(allowed, values[0]) {
				return "InvalidParameterValue", fmt.Sprintf("Value (%s) for parameter %s is invalid", values[0], name)
			}
		}
		for _, m := range listMember.FindAllStringSubmatchIndex(name, -1) {
			members[name[:m[3]]] = true
		}
	}
	// A member numbered n needs the member numbered n-1 of its list.
	for member := range members {
		i := strings.LastIndex(member, ".")
		num, _ := strconv.Atoi(member[i+1:])
		if prev := member[:i+1] + strconv.Itoa(num-1); num > 1 && !members[prev] {
			return "InvalidParameterValue", fmt.Sprintf("The parameter %s has no %s before it", member, prev)
		}
	}
	return checkAction(action, form)
}

// checkAction checks what EC2 requires of the action's parameters
// together.
func checkAction(action string, form url.Values) (code, msg string) {
	switch action {
	case "RunInstances":
		for _, p := range []string{"ImageId", "MinCount", "MaxCount"} {
			if !form.Has(p) {
				return "MissingParameter", "The request must contain the parameter " + p
			}
		}
		if tok := form.Get("ClientToken"); len(tok) > 64 {
			return "InvalidParameterValue", "The client token must be at most 64 ASCII characters"
		}
	case "DescribeInstances":
		if form.Has("MaxResults") && form.Has("InstanceId.1") {
			return "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults"
		}
	}
	if v := form.Get("MaxResults"); v != "" {
		if m, err := strconv.Atoi(v); err != nil || m < 5 || m > 1000 {
			return "InvalidParameterValue", "Value (" + v + ") for parameter maxResults is invalid. Expecting a value between 5 and 1000."
		}
	}
	return "", ""
}
