#!/usr/bin/env bash
# The quick start: sets up, starts a tsswarm daemon on a private socket and data root,
# loads a busybox image built on the spot, runs a web server container and shows the
# engine's commands; then makes the daemon a one-node swarm (its own etcd, on private ports),
# deploys stacks/web.yml, shows the stack, its tasks and their logs, scales it, removes it;
# starts a registry on loopback, builds examples/hello and deploys stacks/hello.yml (built,
# pushed, pulled); leaves the swarm; then stops and removes everything it started. The daemon runs in a network
# namespace of its own, so nothing of this machine's network is changed.
#
#   bash examples/quickstart.sh            (as root)
#   bash examples/quickstart.sh --consul   the same swarm with a Consul server (127.0.0.1:8500,
#                                          DNS :8600) where every task is registered
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DISCOVERY=()
case "${1:-}" in
  --consul) DISCOVERY=(--consul) ;;
  '') ;;
  *) echo "usage: bash examples/quickstart.sh [--consul]" >&2; exit 2 ;;
esac

bash scripts/setup.sh
P=tsswarm-quickstart-$$
DIR=/tmp/$P
mkdir -p "$DIR"
tsswarm() { node dist/src/cli/main.js -H "unix://$DIR/tsswarm.sock" "$@"; }

DAEMON=
REGISTRY=
cleanup() {
  set +e
  [[ -n $REGISTRY ]] && kill "$REGISTRY" 2>/dev/null && wait "$REGISTRY" 2>/dev/null
  for c in $(tsswarm container ps -a -q 2>/dev/null); do tsswarm container rm -f "$c" >/dev/null; done
  [[ -n $DAEMON ]] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
  node dist/src/cli/main.js cleanup --prefix "$P" >/dev/null
}
trap cleanup EXIT
# the daemon gets a network namespace of its own (loopback only): its bridges, VXLAN devices and
# rules live there, not on this machine's network
ip netns add "$P"
ip netns exec "$P" ip link set lo up
nsenter --net="/run/netns/$P" node dist/src/cli/main.js daemon --data-root "$DIR/root" \
  --socket "$DIR/tsswarm.sock" --cgroup-parent "$P" --dns-upstream none 2>"$DIR/daemon.log" &
DAEMON=$!
for _ in $(seq 100); do [[ -S $DIR/tsswarm.sock ]] && break; sleep 0.1; done

step() { printf '\n\033[1m$ tsswarm %s\033[0m\n' "$*"; tsswarm "$@"; }

node dist/examples/busybox-image.js "$DIR/busybox.tar" busybox:latest >/dev/null
step image load -i "$DIR/busybox.tar"
step image ls
step container run --rm busybox echo "hello from a container"
tsswarm container run -d --name web -m 64m --cpus 0.5 --pids-limit 50 busybox \
  sh -c 'mkdir -p /srv && echo "<h1>served by tsswarm</h1>" > /srv/index.html && exec httpd -f -v -p 8080 -h /srv' >/dev/null
sleep 0.5
step container ps
step container exec web wget -qO- http://127.0.0.1:8080/
step container logs web
step container stats --no-stream web
step container stop web

# a local cluster of one manager, with a deployed stack
step swarm init "${DISCOVERY[@]}" --etcd-client-port 23791 --etcd-peer-port 23792 --dispatcher-port 23793
step deploy -c stacks/web.yml web
step stack services web
step service ps web_httpd
step lookup web_httpd
if ((${#DISCOVERY[@]})); then
  printf '\n\033[1m$ curl http://127.0.0.1:8500/v1/health/service/web-httpd?passing\033[0m   (Consul itself)\n'
  ip netns exec "$P" curl -sf 'http://127.0.0.1:8500/v1/health/service/web-httpd?passing' | node -e '
    for (const e of JSON.parse(require("fs").readFileSync(0, "utf8")))
      console.log(e.Service.ID.slice(0, 12), e.Service.Address, e.Service.Port, e.Checks.map((c) => c.Status).join(","))'
fi
task=$(tsswarm container ps --format json | node -e \
  'const cs = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(cs.find((c) => c.Name.startsWith("web_httpd.")).Name)')
step container exec "$task" wget -qO- http://127.0.0.1:8080/
step container exec "$task" nslookup httpd          # the embedded DNS: the service's VIP
step container exec "$task" nslookup tasks.httpd    # and its running tasks
step container exec "$task" wget -qO- http://httpd:8080/   # through the VIP: any of the three
step service logs web_httpd
step service scale web_httpd=1
step stack rm web

# images: a registry on the namespace's loopback (Debian's docker-registry), a Dockerfile build,
# and a stack whose service is built, pushed to that registry and pulled by the node
mkdir -p "$DIR/registry"
printf '%s\n' 'version: 0.1' 'log: {level: warn, accesslog: {disabled: true}}' \
  "storage: {filesystem: {rootdirectory: \"$DIR/registry/data\"}, delete: {enabled: true}}" \
  'http: {addr: "127.0.0.1:5000"}' >"$DIR/registry/config.yml"
nsenter --net="/run/netns/$P" env -i PATH="$PATH" docker-registry serve "$DIR/registry/config.yml" \
  2>"$DIR/registry.log" &
REGISTRY=$!
for _ in $(seq 100); do ip netns exec "$P" curl -sf http://127.0.0.1:5000/v2/ >/dev/null && break; sleep 0.1; done
step build -t hello:dev --build-arg GREETING=bonjour examples/hello
step container run --rm hello:dev cat /www/index.html
step deploy -c stacks/hello.yml hello
step service ps hello_hello
step image ls
step stack rm hello
step swarm leave --force
echo
echo "done: everything this script started is being removed"
