import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT as ROOT, PROTO_DIR } from './paths';
import { HEALTH_SERVICE_NAMES, PUBLIC_SERVICE_LIST } from './services';

const names = PUBLIC_SERVICE_LIST.map((s) => s.name);

describe('the one list of public services', () => {
  it('pairs each grpc-js definition with the protobuf-es descriptor of the same service, method for method', () => {
    for (const s of PUBLIC_SERVICE_LIST) {
      const paths = Object.values(s.definition).map((m) => m.path).sort();
      expect(paths).toEqual(s.web.methods.map((m) => `/${s.name}/${m.name}`).sort());
    }
  });

  it('names proto files that exist and declare the service', () => {
    for (const s of PUBLIC_SERVICE_LIST) {
      const file = join(PROTO_DIR, s.protoFile);
      expect(existsSync(file)).toBe(true);
      expect(readFileSync(file, 'utf8')).toMatch(new RegExp(`^service ${s.web.name} \\{`, 'm'));
    }
  });

  it('gives health a name for the server and for each service', () => {
    expect(HEALTH_SERVICE_NAMES).toEqual(['', ...names]);
  });

  it('is what the web code generator is given (buf.gen.web.yaml)', () => {
    const inputs = [...readFileSync(join(ROOT, 'buf.gen.web.yaml'), 'utf8').matchAll(/^\s*- proto\/(\S+\.proto)$/gm)].map((m) => m[1]);
    expect(inputs.sort()).toEqual(PUBLIC_SERVICE_LIST.map((s) => s.protoFile).sort());
  });

  it.each(['gateway/envoy.yaml', 'gateway/envoy.compose.yaml'])('is what %s routes to the gateways, and its health check asks for one of them', (file) => {
    const yaml = readFileSync(join(ROOT, file), 'utf8');
    const prefixes = [...yaml.matchAll(/match: \{ prefix: "([^"]+)" \}/g)].map((m) => m[1]!).filter((p) => p !== '/');
    expect(prefixes.sort()).toEqual(names.map((n) => `/${n}/`).sort());
    const checked = [...yaml.matchAll(/grpc_health_check:\s*\n\s*service_name: (\S+)/g)].map((m) => m[1]);
    expect(checked.length).toBeGreaterThan(0);
    for (const c of checked) expect(names).toContain(c);
  });
});
