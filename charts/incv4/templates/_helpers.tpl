{{/*
Helpers. The Job and the recipe ConfigMap mirror incv4.operator.render exactly (names, labels, key order, which
keys appear when): change both together; tests/unit/chart/test_chart_parity.py compares them over a matrix of
settings.
*/}}

{{/* What the trainer and the cluster side share (incv4.trainer.contract: the metrics port and its name, the Volcano
task name, the permanent exit codes, ...), as JSON text: `include "incv4.contract" . | fromJson`. The file is
generated from the contract, so the chart never spells these values itself. */}}
{{- define "incv4.contract" -}}
{{- $text := .Files.Get "files/contract.json" -}}
{{- if not $text -}}
{{- fail "files/contract.json: missing (regenerate it: python -m incv4.operator.monitoring.contract_file)" -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/* The pod's /metrics port: .Values.metricsPort, or the contract's when that is null. */}}
{{- define "incv4.metricsPort" -}}
{{- if kindIs "invalid" .Values.metricsPort -}}
{{- (include "incv4.contract" . | fromJson).metricsPort | int -}}
{{- else -}}
{{- .Values.metricsPort | int -}}
{{- end -}}
{{- end -}}

{{/* The job name: .Values.name or the release name, checked as spec.py checks it. */}}
{{- define "incv4.name" -}}
{{- $name := .Values.name | default .Release.Name -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "name %q: must be a DNS-1035 label: lower-case letters, digits and '-', starting with a letter and ending with a letter or digit (set .Values.name)" $name) -}}
{{- end -}}
{{- /* Pod hostnames <name>-<task>-<index> must stay within a 63-character DNS label. */ -}}
{{- $task := (include "incv4.contract" . | fromJson).taskName -}}
{{- $limit := sub 63 (add (len (printf "-%s-" $task)) (len (toString (max (sub (int .Values.nodes) 1) 0)))) -}}
{{- if gt (len $name) (int $limit) -}}
{{- fail (printf "name %q: %d characters is too long; at most %d so that pod hostnames '<name>-%s-%d' stay within 63 (set .Values.name)" $name (len $name) $limit $task (sub (int .Values.nodes) 1)) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* The labels render.labels() puts on the Job and the recipe ConfigMap. */}}
{{- define "incv4.labels" -}}
app.kubernetes.io/name: incv4
app.kubernetes.io/instance: {{ include "incv4.name" . }}
app.kubernetes.io/component: trainer
app.kubernetes.io/part-of: incv4
{{- end -}}

{{/* The labels of the chart's other objects: the run's labels plus Helm's own. */}}
{{- define "incv4.chartLabels" -}}
app.kubernetes.io/name: incv4
app.kubernetes.io/instance: {{ include "incv4.name" . }}
app.kubernetes.io/part-of: incv4
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* How each chip shows up in Kubernetes: spec.CHIPS (resource, ring-controller.atlas pod label, accelerator-type
node label). "cpu" has none of them. spec.HOST_ARCHES: the host-arch node label by .Values.arch. */}}
{{- define "incv4.hostArch" -}}
{{- get (dict "arm" "huawei-arm" "x86" "huawei-x86") (toString .Values.arch) -}}
{{- end -}}

{{- define "incv4.chip" -}}
{{- $chips := dict
  "910" (dict "resource" "huawei.com/Ascend910" "podLabel" "ascend-910" "acceleratorType" "module")
  "910B" (dict "resource" "huawei.com/Ascend910" "podLabel" "ascend-910b" "acceleratorType" "module-910b-8")
  "cpu" (dict) -}}
{{- toJson (get $chips (toString .Values.chip)) -}}
{{- end -}}

{{/* The fault-scheduling label value (spec.JobSpec.fault_scheduling_label), or "" where nobody reads it: only
Huawei's Volcano NPU plugin does, so an explicit value elsewhere is refused as spec.py refuses it. */}}
{{- define "incv4.faultScheduling" -}}
{{- $chip := include "incv4.chip" . | fromJson -}}
{{- $onPlugin := and (eq .Values.npuMode "volcano") $chip.resource -}}
{{- if and .Values.faultScheduling (not $onPlugin) -}}
{{- fail (printf "faultScheduling %q: only Huawei's Volcano NPU plugin acts on it; it needs npuMode volcano and an NPU chip (got %s, chip %s)" .Values.faultScheduling .Values.npuMode (toString .Values.chip)) -}}
{{- end -}}
{{- if $onPlugin -}}
{{- .Values.faultScheduling | default "grace" -}}
{{- end -}}
{{- end -}}

{{/* The container's CPU and memory, requests = limits (spec.JobSpec.pod_cpu / pod_memory): the values given, or
spec.CPU_PER_NPU and MEMORY_GIB_PER_NPU per NPU on an NPU chip; as JSON {"cpu": ..., "memory": ...}. */}}
{{- define "incv4.podResources" -}}
{{- $chip := include "incv4.chip" . | fromJson -}}
{{- $out := dict -}}
{{- $requests := .Values.resources.requests -}}
{{- $npus := int .Values.npusPerNode -}}
{{- if $requests.cpu }}{{ $_ := set $out "cpu" (toString $requests.cpu) }}
{{- else if $chip.resource }}{{ $_ := set $out "cpu" (toString (mul 16 $npus)) }}{{ end -}}
{{- if $requests.memory }}{{ $_ := set $out "memory" (toString $requests.memory) }}
{{- else if $chip.resource }}{{ $_ := set $out "memory" (printf "%dGi" (mul 64 $npus)) }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "incv4.recipeConfigMapName" -}}
{{- printf "%s-recipe" (include "incv4.name" .) -}}
{{- end -}}

{{/* Where the recipe comes from (the ConfigMap's incv4.io/recipe-source annotation). */}}
{{- define "incv4.recipeSource" -}}
{{- if .Values.recipe.inline -}}
values:recipe.inline
{{- else -}}
{{- printf "chart:%s" .Values.recipe.file -}}
{{- end -}}
{{- end -}}

{{/* The recipe text, verbatim. */}}
{{- define "incv4.recipeText" -}}
{{- if .Values.recipe.inline -}}
{{- .Values.recipe.inline -}}
{{- else -}}
{{- $text := .Files.Get .Values.recipe.file -}}
{{- if not $text -}}
{{- fail (printf "recipe.file %q: no such file in the chart (shipped: recipes/inception_v4_ascend.yaml); give recipe.inline for your own recipe" .Values.recipe.file) -}}
{{- end -}}
{{- $text -}}
{{- end -}}
{{- end -}}

{{/* The dataset claim the pods mount, or "" for a hostPath. createPvc > hostPath > pvc. */}}
{{- define "incv4.datasetClaim" -}}
{{- if .Values.dataset.createPvc.enabled -}}
{{- printf "%s-dataset" (include "incv4.name" .) -}}
{{- else if not .Values.dataset.hostPath -}}
{{- required "dataset: give dataset.pvc (an existing claim), dataset.hostPath or dataset.createPvc.enabled" .Values.dataset.pvc -}}
{{- end -}}
{{- end -}}

{{/* The checkpoint claim, or "" for an emptyDir. */}}
{{- define "incv4.ckptClaim" -}}
{{- if .Values.checkpoint.createPvc.enabled -}}
{{- printf "%s-ckpt" (include "incv4.name" .) -}}
{{- else -}}
{{- .Values.checkpoint.pvc -}}
{{- end -}}
{{- end -}}

{{/* render.launch_command(spec). */}}
{{- define "incv4.launchCommand" -}}
{{- $contract := include "incv4.contract" . | fromJson -}}
- incv4
- launch
- --config
- /etc/incv4/recipe.yaml
- --data-dir
- /data
{{- range .Values.recipe.overrides }}
{{- if eq (trim (first (splitList "=" .))) "ckpt_save_dir" }}
{{- fail "recipe key 'ckpt_save_dir' is set by incv4 on the cluster (the checkpoint volume at /ckpt); remove it from recipe.overrides" }}
{{- end }}
- --set
- {{ . | quote }}
{{- end }}
- --set
- ckpt_save_dir=/ckpt
- --metrics-port
- {{ include "incv4.metricsPort" . | quote }}
{{- if .Values.bindCore }}
{{- /* the seed's msrun --bind_core=True; incv4 launch leaves it off, as msrun does */}}
- --bind-core
{{- end }}
{{- if ne (int .Values.npusPerNode) (int $contract.defaultLocalWorkers) }}
{{- /* one worker process per NPU; the launcher's default is a full node's */}}
- --local-workers
- {{ .Values.npusPerNode | int | toString | quote }}
{{- end }}
{{- if .Values.maxRestarts }}
{{- if gt (int .Values.nodes) 1 }}
{{- fail (printf "maxRestarts %d: restarts the workers of one node only, and this job has %d nodes (their peers would have to restart too: that is maxRetry, Volcano's RestartJob)" (int .Values.maxRestarts) (int .Values.nodes)) }}
{{- end }}
- --max-restarts
- {{ .Values.maxRestarts | int | toString | quote }}
{{- end }}
{{- end -}}
