#!/usr/bin/python
"""Documentation of the action plugin plugins/action/build_wait.py, which does the work on the
controller: it follows a build started with ``async`` and ``poll: 0`` and prints its progress."""

from __future__ import annotations

DOCUMENTATION = r"""
module: build_wait
short_description: Wait for a background build, printing its progress and the time left
version_added: 1.0.0
description:
  - Polls a job started with C(async) like C(async_status) in an C(until) loop, but prints a
    line every I(report_every) seconds with the time so far and about how long is left.
  - Ends with the job's own result; fails when the job failed or outlasted I(timeout).
  - The work is done on the controller by the action plugin of the same name; this file only
    documents it.
author:
  - r-lambda maintainers (!UNKNOWN)
notes:
  - No check mode, it follows a job that is running.
options:
  jid:
    type: str
    required: true
    description: "The job id a task with C(async) and C(poll: 0) registered (C(ansible_job_id))."
  label:
    type: str
    required: true
    description: What is being built, as a person reads it (e.g. C(R 4.6.1)).
  expected_seconds:
    type: float
    default: 0
    description: How long the build should take (0 says nothing about the time left).
  expected_from:
    type: str
    default: ""
    description: "Where that figure comes from, printed with it (e.g. C(the last build here))."
  started_at:
    type: float
    default: 0
    description: Epoch second the build started (0 counts from this task).
  timeout:
    type: int
    default: 3600
    description: Seconds after which the wait fails (the build is left to its async limit).
  poll:
    type: int
    default: 5
    description: Seconds between two looks at the build.
  keep_alive:
    type: str
    default: ""
    description: >-
      A file on the controller touched at every poll: the build's claim in the machine-wide
      cache (module cache_entry), alive while its build runs.
  report_every:
    type: int
    default: 30
    description: Seconds between two progress lines.
"""

EXAMPLES = r"""
- name: Start compiling R in the background
  r_lambda.release.source_build:
    chdir: /var/tmp/r/R-4.6.1
    configure: [--prefix=/opt/R/4.6.1]
    stage: /var/tmp/r/stage
    prefix: /opt/R/4.6.1
    tarball: /var/tmp/r/R.tar.gz
  async: 3600
  poll: 0
  register: job

- name: Compile R, saying how long is left
  r_lambda.release.build_wait:
    jid: "{{ job.ansible_job_id }}"
    label: compiling R 4.6.1
    expected_seconds: 200
    expected_from: a first-time estimate
"""

RETURN = r"""
elapsed_seconds:
  description: Seconds from the build's start (I(started_at), else this task's) to its end.
  type: float
  returned: always
  sample: 212.4
rc:
  description: The build's exit code, when its module returns one.
  type: int
  returned: when the build's module returns it
  sample: 0
stdout:
  description: The build's standard output, when its module returns it.
  type: str
  returned: when the build's module returns it
  sample: ""
stderr:
  description: The build's standard error, when its module returns it.
  type: str
  returned: when the build's module returns it
  sample: ""
seconds:
  description: >-
    The seconds of each step, as r_lambda.release.source_build returns them (every key the
    build's module returned is passed on, not C(async_status)'s own such as C(started)).
  type: dict
  returned: when the build is r_lambda.release.source_build
  sample: {configure: 31.2, make: 170.5, install: 8.1, pack: 2.6}
msg:
  description: Why the build failed, with the end of its output.
  type: str
  returned: failure
  sample: "the build of R 4.5.0 failed: make: *** [Makefile:60: R] Error 1"
"""
