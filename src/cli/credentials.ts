/**
 * Registry credentials of `tsswarm login`: `$TSSWARM_CONFIG/config.json` (default
 * `~/.tsswarm/config.json`), Docker's `{"auths": {"HOST": {"auth": base64(user:password)}}}`
 * form, written atomically with mode 0600 in a 0700 directory.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { invalid } from '../api/errors.js';
import { DEFAULT_DOMAIN, parseReference } from '../engine/images/reference.js';
import type { RegistryCredentials } from '../engine/registry/auth.js';

interface ConfigFile {
  auths?: Record<string, { auth?: string; identitytoken?: string }>;
  [k: string]: unknown;
}

export function configDir(): string {
  return process.env.TSSWARM_CONFIG || join(homedir(), '.tsswarm');
}

const configPath = () => join(configDir(), 'config.json');

async function read(): Promise<ConfigFile> {
  let text: string;
  try {
    text = await fs.readFile(configPath(), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  try {
    return JSON.parse(text) as ConfigFile;
  } catch {
    throw invalid(`${configPath()} is not valid JSON: fix or remove it`);
  }
}

async function write(cfg: ConfigFile): Promise<void> {
  await fs.mkdir(configDir(), { recursive: true, mode: 0o700 });
  const tmp = `${configPath()}.${randomBytes(4).toString('hex')}`;
  await fs.writeFile(tmp, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
  await fs.chmod(tmp, 0o600);
  await fs.rename(tmp, configPath());
}

/** A registry as `login` names it: `docker.io` for none, else HOST[:PORT] (a URL's scheme and path dropped). */
export function registryHost(server: string | undefined): string {
  if (!server) return DEFAULT_DOMAIN;
  const h = server.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (h === 'index.docker.io' || h === 'registry-1.docker.io') return DEFAULT_DOMAIN;
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:]+\](:\d{1,5})?$/.test(h))
    throw invalid(`invalid registry address "${server}"`);
  return h;
}

export async function saveCredentials(host: string, c: RegistryCredentials): Promise<string> {
  const cfg = await read();
  cfg.auths ??= {};
  cfg.auths[host] = { auth: Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64') };
  await write(cfg);
  return configPath();
}

export async function removeCredentials(host: string): Promise<boolean> {
  const cfg = await read();
  if (!cfg.auths?.[host]) return false;
  delete cfg.auths[host];
  await write(cfg);
  return true;
}

export async function credentialsFor(host: string): Promise<RegistryCredentials | undefined> {
  const e = (await read()).auths?.[host];
  if (!e) return undefined;
  if (e.identitytoken) return { identityToken: e.identitytoken };
  if (!e.auth) return undefined;
  const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0)
    throw invalid(`the credentials stored for ${host} in ${configPath()} are malformed: log in again`);
  return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

/** The stored credentials for the registry an image reference names. */
export async function credentialsForImage(ref: string): Promise<RegistryCredentials | undefined> {
  return credentialsFor(parseReference(ref.trim()).domain);
}

/** Every stored login, as Docker's AuthConfig per host (sent with a build for its FROM images). */
export async function allCredentials(): Promise<Record<string, { username: string; password: string }>> {
  const out: Record<string, { username: string; password: string }> = {};
  for (const host of Object.keys((await read()).auths ?? {})) {
    const c = await credentialsFor(host);
    if (c?.username) out[host] = { username: c.username, password: c.password ?? '' };
  }
  return out;
}
