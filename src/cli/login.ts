import { Command } from 'commander';
import type { Client } from '../api/client.js';
import { invalid } from '../api/errors.js';
import { registryHost, removeCredentials, saveCredentials } from './credentials.js';

async function readStdin(): Promise<string> {
  let s = '';
  process.stdin.setEncoding('utf8');
  for await (const c of process.stdin) s += c;
  return s.replace(/\r?\n$/, '');
}

/** `tsswarm login` and `tsswarm logout`. */
export function loginCommands(getClient: () => Client): Command[] {
  const login = new Command('login')
    .description('Log in to a registry: the daemon checks the credentials, then they are stored (mode 0600)')
    .argument('[server]', 'registry HOST[:PORT] (default docker.io)')
    .option('-u, --username <user>')
    .option(
      '-p, --password <password>',
      'prefer --password-stdin: a password on the command line is visible to others',
    )
    .option('--password-stdin', 'read the password from STDIN')
    .action(
      async (
        server: string | undefined,
        o: { username?: string; password?: string; passwordStdin?: boolean },
      ) => {
        const host = registryHost(server);
        if (!o.username) throw invalid('login needs --username');
        if (o.password !== undefined && o.passwordStdin)
          throw invalid('give --password or --password-stdin, not both');
        const password = o.passwordStdin ? await readStdin() : o.password;
        if (!password) throw invalid('login needs a password: --password-stdin (or --password)');
        if (o.password !== undefined)
          process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
        await getClient().request('POST', '/auth', {
          body: { serveraddress: host, username: o.username, password },
        });
        const file = await saveCredentials(host, { username: o.username, password });
        process.stdout.write(`Login Succeeded (credentials stored in ${file})\n`);
      },
    );
  const logout = new Command('logout')
    .description('Forget the stored credentials of a registry')
    .argument('[server]', 'registry HOST[:PORT] (default docker.io)')
    .action(async (server: string | undefined) => {
      const host = registryHost(server);
      const removed = await removeCredentials(host);
      process.stdout.write(
        removed ? `Removing login credentials for ${host}\n` : `Not logged in to ${host}\n`,
      );
    });
  return [login, logout];
}
