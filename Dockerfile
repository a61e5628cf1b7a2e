# syntax=docker/dockerfile:1
# The in-pod image of an incv4 training run: an Ascend CANN + Python base, MindSpore, and this package.
#
#   docker build -t registry.example.com/incv4:0.1.0 .
#   docker build --build-arg BASE_IMAGE=ascendai/cann:8.2.rc1-910b-ubuntu22.04-py3.11 \
#                --build-arg MINDSPORE_VERSION=2.6.0 -t registry.example.com/incv4:0.1.0-ms2.6.0 .
#
# MindSpore must match the CANN release in the base image, and be 2.5 or later: the launcher and the trainer call
# ms.set_device, ms.device_context and ms.runtime.dispatch_threads_num, which first appear in MindSpore 2.5. So
# MindSpore 2.3.1 + CANN 8.0.RC2.beta1, the pair of MindCV's InceptionV4 README (its published 80.98 top-1), and
# 2.4.10 + CANN 8.0.0 cannot run incv4. Published pairs that can (Ascend driver/firmware on the node):
#
#   mindspore | CANN (base image)  | Ascend driver | source
#   ----------|--------------------|---------------|---------------------------------------------------------
#   2.6.0     | 8.2.RC1            | 25.2.x        | Ascend's ascend-deployer version_match.json
#   2.7.1     | 8.3.RC1 (default)  | 25.3.RC1      | MindSpore Transformers' version table; version_match.json
#
# Base images follow Ascend's tag scheme <cann>-<chip>-<os>-<python>: `910b` images for Atlas A2 (910B, the default
# chip of `incv4 render` and the chart), `910` for Atlas 800 (910); build one per chip you run on, for the
# architecture of its nodes (`--arch`). incv4's own test suite runs on MindSpore 2.10.0's CPU build; no NPU pair has
# been tested by this project: treat the table as the vendors' published compatibility, not as incv4 results.
ARG BASE_IMAGE=ascendai/cann:8.3.rc1-910b-ubuntu22.04-py3.11
FROM ${BASE_IMAGE}

ARG MINDSPORE_VERSION=2.7.1
# The Ascend device nodes (/dev/davinci*, /dev/davinci_manager, /dev/devmm_svm, /dev/hisi_hdc) belong to the
# driver's running user, HwHiAiUser:HwHiAiUser, mode 0660, on the node. A non-root process may open them only
# through a group with the SAME GID as the node's HwHiAiUser group: set HWHIAIUSER_GID to
# `getent group HwHiAiUser | cut -d: -f3` on your NPU nodes (1000 is the usual value on a fresh install).
ARG HWHIAIUSER_GID=1000
ARG INCV4_UID=1000
# The port `incv4 launch` serves /metrics on (all local ranks behind one endpoint): the renderer's default.
ARG METRICS_PORT=9400

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# MindSpore first, pinned by the build argument: the package's own `train` extra pins the CPU test version,
# so the package itself is installed without extras below.
RUN pip install --no-cache-dir "mindspore==${MINDSPORE_VERSION}" "numpy>=1.24,<2" "pillow>=10,<12"

WORKDIR /opt/incv4/src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY trainer ./trainer
COPY configs ./configs
RUN pip install --no-cache-dir . \
    && incv4 --help > /dev/null

# The non-root running user, in a group carrying the node's HwHiAiUser GID (see above), so the /dev/davinci*
# nodes the Ascend runtime mounts are usable without privileges or added capabilities. The rendered pods run as
# runAsUser/runAsGroup 1000 (the chart's runAsUser/runAsGroup, `incv4 render`'s JobSpec.run_as_user/group): keep
# the three in step. An id the base image already has (e.g. ubuntu's uid 1000 on 24.04) is reused.
RUN (getent group "${HWHIAIUSER_GID}" > /dev/null || groupadd --gid "${HWHIAIUSER_GID}" HwHiAiUser) \
    && if getent passwd "${INCV4_UID}" > /dev/null; then \
         usermod --gid "${HWHIAIUSER_GID}" "$(getent passwd "${INCV4_UID}" | cut -d: -f1)"; \
       else \
         useradd --uid "${INCV4_UID}" --gid "${HWHIAIUSER_GID}" --create-home --shell /bin/bash incv4; \
       fi \
    && mkdir -p /workspace \
    && chown "${INCV4_UID}:${HWHIAIUSER_GID}" /workspace
USER ${INCV4_UID}:${HWHIAIUSER_GID}
# MindSpore writes logs and compile caches (kernel_meta, rank_* folders) into the working directory and HOME; the
# rendered pods mount a writable emptyDir at /tmp for both and keep the root filesystem read-only.
WORKDIR /workspace
ENV HOME=/workspace

ENV INCV4_METRICS_PORT=${METRICS_PORT}
EXPOSE ${METRICS_PORT}
# Docker-only hint (Kubernetes ignores HEALTHCHECK; give the pod a probe on the named `metrics` port instead):
# healthy once the launcher serves /metrics. Graph compilation takes minutes before the first step.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/metrics' % os.environ['INCV4_METRICS_PORT'], timeout=4)"]

# The renderer (incv4.operator.render.launch_command) and the Helm chart run exactly this command line. Ascend's
# cann images wrap their ENTRYPOINT in `source set_env.sh`; they also set the same variables with ENV, so replacing
# that ENTRYPOINT loses nothing (check `docker inspect` of another base image).
ENTRYPOINT ["incv4", "launch"]
CMD ["--config", "/etc/incv4/recipe.yaml", "--data-dir", "/data", "--set", "ckpt_save_dir=/ckpt", "--metrics-port", "9400", "--bind-core"]
