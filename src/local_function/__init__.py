"""A released package served as a local function, the way Lambda behind API Gateway serves it.

One long-lived front process on the controller (standard library only) serves:

* an HTTP endpoint on 127.0.0.1:<port> that turns each request into an API Gateway HTTP
  API (payload format 2.0) event, hands it to a free execution environment, and turns the
  function's proxy answer (statusCode, headers, body) back into the HTTP response, with
  ``X-Function-Version`` naming the release that answered. A function error answers 502,
  an invocation that times out 504, a request no environment took within the timeout 429;
  each with a short JSON body, never a stack trace;
* one Lambda Runtime API (2018-06-01) per execution environment, on a unix socket mounted
  into that environment alone (the Runtime API of package_test's lambda_invoke in
  src/lambda_invoke, shared, not copied; runtime_socket, relay.py);
* a control API on a unix socket (``<state dir>/control.sock``, mode 0600) that the role's
  ``deploy``, ``status`` and ``stop`` commands talk to.

Each execution environment is a podman container of the Lambda stand-in image: the package
unpacked read-only at /var/task, awslambdaric at /var/runtime, a read-only root with a
tmpfs /tmp, ``--memory`` and ``--memory-swap`` at the function's memory size, run as
nobody, no network (--network none), no capability (--cap-drop ALL), no new privileges,
its Runtime API a unix socket only it mounts (relay.py carries 127.0.0.1:9001 there),
running ``<python> -m awslambdaric handler.lambda_handler`` with Lambda's environment
variables. An environment takes one invocation at a time; requests wait for a free one in arrival
order. An environment whose client dies or times out is replaced.

A deploy (blue/green, inside the front): the new release's environments start and finish
their init (the runtime client's first ``GET /invocation/next``) while the old ones serve;
then new requests go to the new ones, the old ones finish what they hold, and are stopped.
A deploy that fails (init error, client exits, init timeout) stops its own environments
and leaves the serving release as it was. No request is dropped either way.

The role runs this package as a zip application on the controller, with package_test's
lambda_invoke packed beside it (``python3 local_function-<digest>.pyz COMMAND ...``;
``python -m local_function`` where the package is installed). Commands (each prints one JSON object
on stdout; errors go to stderr, exit 1):

    local_function start  --state-dir D --port P    start the front unless it runs
    local_function deploy --state-dir D --package ZIP --version V [--environments N ...]
    local_function status --state-dir D
    local_function stop   --state-dir D [--id ID]   stop the front and its containers,
                                                     remove the state folder
    local_function serve  --state-dir D --port P    the front itself (start runs it)

The state folder holds ``state.json`` (pid, port, url, version, sha256, environments,
containers), ``control.sock``, ``front.log`` (the front's and the functions' output),
``tasks/<sha256 prefix>/`` (unpacked packages) and ``runtime/`` (awslambdaric).

One module per concern: common (package_test's Runtime API, the operator's error, the
log), events (request -> event, proxy answer -> response), environments (Spec, an
environment, a generation, the dispatcher, unpacking), front (deploys, blue/green,
invocations), endpoint (the HTTP server), control (the unix-socket API and its client),
process (state.json, serve, start, stop) and cli (deploy, status, the argument parser and
main).
"""
