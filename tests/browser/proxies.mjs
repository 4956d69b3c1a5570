// Real proxies between the browser and the server, each started on a free
// loopback port in a temporary directory and stopped by pid: Debian's nginx
// (as a reverse proxy that buffers and compresses, or one that cuts
// responses idle for a few seconds) and squid (a forward proxy), and
// mitmproxy from PyPI (a reverse proxy that holds whole bodies). Each is
// started with the fewest settings that give the behaviour the tests need.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Where `scripts/test` installs mitmproxy. */
const MITMDUMP = process.env.MITMDUMP ?? join(ROOT, 'target', 'mitm-venv', 'bin', 'mitmdump');
const NGINX = '/usr/sbin/nginx';
const SQUID = '/usr/sbin/squid';
/** How long a proxy may take to listen. */
const START_MS = 20_000;

/** A loopback port nothing listens on now. */
async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Runs `command args` with `dir` as its scratch directory, and resolves
 * once its output shows `ready` (each tool says when it listens), to the
 * proxy and `stop()`, which signals the pid, waits for the exit and
 * removes `dir`. Rejects when it exits first or says nothing in time.
 */
async function run(what, command, args, { dir, port, ready }) {
  if (!existsSync(command)) throw new Error(`${command} is missing: scripts/test installs it`);
  const child = spawn(command, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      process.kill(child.pid, 'SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what} did not say it listens within ${START_MS} ms:\n${output}`)), START_MS);
      const read = (chunk) => {
        // mitmproxy logs every request: keep the tail, for a failure's message.
        output = (output + chunk).slice(-65_536);
        if (ready.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', read);
      child.stderr.on('data', read);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${what} exited (${code ?? signal}) before listening:\n${output}`));
      });
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, port, stop, log: () => output };
}

/** A scratch directory every worker user may write (nginx's and squid's drop root). */
async function scratch(prefix) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await chmod(dir, 0o777);
  return dir;
}

/**
 * nginx as a reverse proxy to `upstream` (http://127.0.0.1:PORT), with
 * `settings` inside its `location /`.
 */
async function nginx(upstream, settings) {
  const dir = await scratch('signalpost-nginx-');
  const port = await freePort();
  const config = `
worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr notice;
daemon off;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
${settings}
    }
  }
}
`;
  await writeFile(join(dir, 'nginx.conf'), config);
  // Its sockets are bound before it starts its workers.
  return run('nginx', NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { dir, port, ready: /start worker processes/ });
}

/**
 * nginx that buffers every response and compresses it, and ignores the
 * stream's `X-Accel-Buffering: no`: a stream's bytes come through only in
 * lumps, if at all.
 */
export function startBufferingNginx(upstream) {
  return nginx(upstream, `
      proxy_buffering on;
      proxy_ignore_headers X-Accel-Buffering;
      gzip on;
      gzip_proxied any;
      gzip_min_length 0;
      gzip_types text/event-stream application/json;`);
}

/** nginx that passes bytes on at once but cuts any response idle for `seconds`. */
export function startIdleCuttingNginx(upstream, seconds) {
  return nginx(upstream, `
      proxy_buffering off;
      proxy_read_timeout ${seconds}s;`);
}

/** squid as a forward proxy that caches nothing. */
export async function startSquid() {
  const dir = await scratch('signalpost-squid-');
  const port = await freePort();
  const config = `
http_port 127.0.0.1:${port}
http_access allow all
cache deny all
cache_mem 8 MB
pid_filename ${dir}/squid.pid
cache_log ${dir}/cache.log
access_log none
coredump_dir ${dir}
shutdown_lifetime 0 seconds
`;
  await writeFile(join(dir, 'squid.conf'), config);
  // `-d 1` copies its log's first level to stderr, where it says it listens.
  return run('squid', SQUID, ['-N', '-d', '1', '-f', join(dir, 'squid.conf')], { dir, port, ready: /Accepting HTTP Socket connections/ });
}

/** mitmproxy as a reverse proxy to `upstream`; it holds every body until it is whole. */
export async function startMitmproxy(upstream) {
  const dir = await scratch('signalpost-mitm-');
  const port = await freePort();
  return run('mitmdump', MITMDUMP, [
    '--mode', `reverse:${upstream}`,
    '--listen-host', '127.0.0.1',
    '--listen-port', String(port),
    '--set', `confdir=${dir}`,
    '--set', 'keep_host_header=true',
  ], { dir, port, ready: /listening at 127\.0\.0\.1:/ });
}
