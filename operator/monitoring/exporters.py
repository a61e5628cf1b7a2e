"""Series of other exporters the dashboard and the alert rules read beside incv4's own (whose names are in
incv4.trainer.contract): Ascend npu-exporter's chip series and kube-state-metrics' container restarts.

npu-exporter names the pod using a chip in `pod_name` (its own `namespace` label may be renamed `exported_namespace`
depending on how it is scraped), so its series are matched to a run's pods by pod name only."""

NPU_POD = "pod_name"     # the pod using the chip
NPU_ID = "id"            # the chip's index on its node
NPU_UTILIZATION = "npu_chip_info_utilization"
NPU_HBM_USED = "npu_chip_info_hbm_used_memory"
NPU_HEALTH = "npu_chip_info_health_status"   # 1 = healthy
NPU_TEMPERATURE = "npu_chip_info_temperature"
NPU_POWER = "npu_chip_info_power"
NPU_ERROR_CODE = "npu_chip_info_error_code"
CONTAINER_RESTARTS = "kube_pod_container_status_restarts_total"
