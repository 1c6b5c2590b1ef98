// Package ringchat holds the ringchat Helm chart (Chart.yaml, values.yaml,
// templates/, files/). Its tests, in chart_test.go, lint and render the chart
// with the pinned helm (hack/tools.sh helm) and check that the CRD and the
// ClusterRole rules in files/ match the generated ones in config/.
package charts
