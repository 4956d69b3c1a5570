// Real proxies between the browser and the server, each started on a free
// loopback port in a temporary directory and stopped by pid: Debian's nginx
// (as a reverse proxy that buffers and compresses, or one that cuts
// responses idle for a few seconds) and squid (a forward proxy), and
// mitmproxy from PyPI (a reverse proxy that holds whole bodies). Each is
// started with the fewest settings that give the behaviour the tests need.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
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

/** Resolves once `port` accepts a connection, rejects when `child` exits or the time is up. */
async function listening(port, child, what, logOf) {
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening:\n${await logOf()}`);
    }
    const open = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() - started > START_MS) throw new Error(`${what} did not listen on ${port} within ${START_MS} ms:\n${await logOf()}`);
    // Polling a port has no event to wait on; the deadline above bounds it.
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Runs `command args` with `dir` as its scratch directory until `stop()`,
 * which signals the pid and waits for the exit.
 */
async function run(what, command, args, { dir, port, logFile }) {
  if (!existsSync(command)) throw new Error(`${command} is missing: scripts/test installs it`);
  const child = spawn(command, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const logOf = async () => output + (logFile ? await readFile(logFile, 'utf8').catch(() => '') : '');
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
    await listening(port, child, what, logOf);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `http://127.0.0.1:${port}`, port, stop, log: logOf };
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
error_log ${dir}/error.log warn;
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
  return run('nginx', NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { dir, port, logFile: join(dir, 'error.log') });
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
  return run('squid', SQUID, ['-N', '-f', join(dir, 'squid.conf')], { dir, port, logFile: join(dir, 'cache.log') });
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
    '--quiet',
  ], { dir, port });
}
