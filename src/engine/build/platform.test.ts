import t from 'tap';
import { platformArgs, platformText, samePlatform } from './platform.js';

t.test('platformArgs: BUILD* and TARGET* of os/arch[/variant]', async (t) => {
  t.same(
    platformArgs(
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ),
    {
      BUILDPLATFORM: 'linux/amd64',
      BUILDOS: 'linux',
      BUILDARCH: 'amd64',
      BUILDVARIANT: '',
      TARGETPLATFORM: 'linux/arm64/v8',
      TARGETOS: 'linux',
      TARGETARCH: 'arm64',
      TARGETVARIANT: 'v8',
    },
  );
  t.equal(platformText({ os: 'linux', architecture: 'arm', variant: 'v7' }), 'linux/arm/v7');
});

t.test('samePlatform: os and architecture must match, a variant only when both have one', async (t) => {
  const amd = { os: 'linux', architecture: 'amd64' };
  t.ok(samePlatform(amd, amd));
  t.notOk(samePlatform(amd, { os: 'linux', architecture: 'arm64' }));
  t.notOk(samePlatform(amd, { os: 'windows', architecture: 'amd64' }));
  t.ok(
    samePlatform(
      { os: 'linux', architecture: 'arm64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ),
  );
  t.notOk(
    samePlatform(
      { os: 'linux', architecture: 'arm', variant: 'v6' },
      { os: 'linux', architecture: 'arm', variant: 'v7' },
    ),
  );
});
