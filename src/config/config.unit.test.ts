import { loadConfig } from './config';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { ConfigError, configTable, SCRIPT_VARIABLES, SETTINGS, unknownSettings } from './schema';

/** The problems loading `env` names (none: it loads). */
function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (e) {
    return (e as ConfigError).problems;
  }
}

describe('configuration', () => {
  it('given no environment, when loaded, then every default of DESIGN.md applies', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      role: 'all',
      grpcAddr: '127.0.0.1:50051',
      httpAddr: '127.0.0.1:8080',
      dataDir: './data',
      insecureClientId: false,
      maxClients: 50,
      maxProcessing: 500,
      firstMessageTimeoutMs: 30000,
      allowedTimeZones: [],
      leaseMs: 10000,
      simDelayScale: 1,
      mediaThreads: 1,
      maxMediaBytes: 8388608,
      llm: { provider: 'simulated' },
    });
  });

  it('given several bad values, when loaded, then one line names each of them', () => {
    const attempt = () =>
      loadConfig({ CHATFLOW_MAX_CLIENTS: 'many', CHATFLOW_GRPC_ADDR: 'nowhere', CHATFLOW_INSECURE_CLIENT_ID: 'maybe' });
    expect(attempt).toThrow(ConfigError);
    try {
      attempt();
    } catch (e) {
      const problems = (e as ConfigError).problems;
      expect(problems).toHaveLength(3);
      expect(problems.join('\n')).toMatch(/CHATFLOW_MAX_CLIENTS="many"/);
      expect(problems.join('\n')).toMatch(/CHATFLOW_GRPC_ADDR="nowhere": must be host:port/);
    }
  });

  it('given a number that is not a whole number in range, when loaded, then it says what it must be, in words', () => {
    for (const bad of ['abc', '1.5', '0', '-3', '12abc']) {
      expect(problems({ CHATFLOW_MAX_CLIENTS: bad })).toEqual([`CHATFLOW_MAX_CLIENTS=${JSON.stringify(bad)}: must be a whole number, at least 1`]);
    }
    expect(problems({ CHATFLOW_FFMPEG_CONCURRENCY: '65' })).toEqual(['CHATFLOW_FFMPEG_CONCURRENCY="65": must be a whole number from 1 to 64']);
    expect(problems({ CHATFLOW_MAX_CLIENTS: ' 12 ' })).toEqual([]);
  });

  it('given a listen address whose port is out of range, when loaded, then it says so in words (not a RangeError from the socket at listen)', () => {
    expect(problems({ CHATFLOW_GRPC_ADDR: '0.0.0.0:99999' })).toEqual(['CHATFLOW_GRPC_ADDR="0.0.0.0:99999": the port must be a number from 0 to 65535']);
    expect(problems({ CHATFLOW_HTTP_ADDR: '[::1]:65536' })).toEqual(['CHATFLOW_HTTP_ADDR="[::1]:65536": the port must be a number from 0 to 65535']);
    expect(problems({ CHATFLOW_GRPC_ADDR: '127.0.0.1:65535', CHATFLOW_HTTP_ADDR: '[::1]:0' })).toEqual([]);
  });

  it('given the real stack addresses mistyped (a broker without its port, a URL of another scheme), when loaded, then each is named, instead of retried for ever at start', () => {
    const stack = { KAFKA_BROKERS: '127.0.0.1:9092', MONGODB_URI: 'mongodb://127.0.0.1:27017/chatflow', NATS_URL: 'nats://127.0.0.1:4222', S3_ENDPOINT: 'http://127.0.0.1:9000' };
    expect(problems(stack)).toEqual([]);
    expect(problems({ ...stack, KAFKA_BROKERS: 'a:9092, b:9093', NATS_URL: '127.0.0.1:4222,tls://n2', MONGODB_URI: 'mongodb+srv://db.example.com/x', S3_ENDPOINT: 'https://s3.amazonaws.com' })).toEqual([]);
    expect(problems({ ...stack, KAFKA_BROKERS: 'localhost' })).toEqual(['KAFKA_BROKERS="localhost": each broker must be host:port, e.g. 127.0.0.1:9092']);
    expect(problems({ ...stack, KAFKA_BROKERS: '127.0.0.1:9092,kafka://b:9092' })).toEqual(['KAFKA_BROKERS="127.0.0.1:9092,kafka://b:9092": each broker must be host:port, e.g. 127.0.0.1:9092']);
    expect(problems({ ...stack, KAFKA_BROKERS: 'a:70000' })).toEqual(['KAFKA_BROKERS="a:70000": each broker must be host:port, e.g. 127.0.0.1:9092']);
    expect(problems({ ...stack, MONGODB_URI: '127.0.0.1:27017' })).toEqual(['MONGODB_URI="127.0.0.1:27017": must be a mongodb:// or mongodb+srv:// URI, e.g. mongodb://127.0.0.1:27017/chatflow']);
    expect(problems({ ...stack, NATS_URL: 'http://127.0.0.1:4222' })).toEqual(['NATS_URL="http://127.0.0.1:4222": each server must be nats://host:port (or tls://, ws://, wss://, or host:port), e.g. nats://127.0.0.1:4222']);
    expect(problems({ ...stack, S3_ENDPOINT: '127.0.0.1:9000' })).toEqual(['S3_ENDPOINT="127.0.0.1:9000": must be an http(s) URL, e.g. http://127.0.0.1:9000']);
  });

  it('given values from an env file saved with Windows line endings, or with blanks around them, when loaded, then they mean what was written (a data dir of ./data, not one named ./data and a carriage return)', () => {
    const c = loadConfig({ CHATFLOW_DATA_DIR: './data\r', LLM_MODEL: ' llama3 \r', CHATFLOW_GRPC_ADDR: '127.0.0.1:50051\r', KAFKA_BROKERS: '127.0.0.1:9092\r', KAFKA_PREFIX: 'cf.\r', LOG_LEVEL: 'warn\r' });
    expect(c).toMatchObject({ dataDir: './data', grpcAddr: '127.0.0.1:50051', kafka: { brokers: ['127.0.0.1:9092'], prefix: 'cf.' }, logLevel: 'warn', llm: { model: 'llama3' } });
  });

  it('given a value with a control character inside it (a line break, a tab, a NUL), when loaded, then it is named, not taken as a path or a name no one can see', () => {
    expect(problems({ CHATFLOW_DATA_DIR: '/var/lib/chat\nflow' })).toEqual(['CHATFLOW_DATA_DIR="/var/lib/chat\\nflow": contains a control character (a line break, a tab, …); no setting takes one']);
    expect(problems({ LLM_MODEL: 'a\tb', CHATFLOW_GATEWAY_ID: 'gw\u0000' })).toHaveLength(2);
  });

  it('given a variable set but empty (`CHATFLOW_MAX_CLIENTS=` in an env file), when loaded, then its default applies, as if unset', () => {
    const c = loadConfig({ CHATFLOW_MAX_CLIENTS: '', CHATFLOW_MAX_PROCESSING: '  ', CHATFLOW_GRPC_ADDR: '', LOG_LEVEL: '' });
    const d = loadConfig({});
    expect([c.maxClients, c.maxProcessing, c.grpcAddr, c.logLevel]).toEqual([d.maxClients, d.maxProcessing, d.grpcAddr, d.logLevel]);
  });

  it('given an allow-list, when loaded, then it is split and trimmed', () => {
    expect(loadConfig({ CHATFLOW_ALLOWED_TIMEZONES: ' Europe/Paris, UTC ,' }).allowedTimeZones).toEqual(['Europe/Paris', 'UTC']);
  });

  it('given an allow-list with a zone that does not exist, when loaded, then that zone is named and refused', () => {
    expect(() => loadConfig({ CHATFLOW_ALLOWED_TIMEZONES: 'Europe/Paris,Mars/Olympus_Mons,UTC' })).toThrow(
      /CHATFLOW_ALLOWED_TIMEZONES="Europe\/Paris,Mars\/Olympus_Mons,UTC": "Mars\/Olympus_Mons" is not an IANA time zone/,
    );
    expect(loadConfig({ CHATFLOW_ALLOWED_TIMEZONES: 'Asia/Calcutta,Etc/GMT+5' }).allowedTimeZones).toEqual(['Asia/Calcutta', 'Etc/GMT+5']);
  });

  it('given the openai provider without a base URL, when loaded, then it is refused', () => {
    expect(() => loadConfig({ LLM_PROVIDER: 'openai' })).toThrow(/LLM_BASE_URL: required/);
  });

  it.each(['LLM_BASE_URL', 'CHATFLOW_STT_URL', 'CHATFLOW_TTS_URL'])('given %s that is not an http(s) URL, when loaded, then it is refused with an example', (name) => {
    expect(() => loadConfig({ [name]: 'not a url' })).toThrow(new RegExp(`${name}="not a url": must be an http\\(s\\) URL, e\\.g\\. http://`));
    expect(() => loadConfig({ [name]: 'ftp://models.example/v1' })).toThrow(new RegExp(`${name}=.*must be an http\\(s\\) URL`));
    expect(() => loadConfig({ [name]: ' https://api.example/v1 ' })).not.toThrow();
  });

  it('given the origins whose pages may call the embedded gRPC-Web endpoint, then they are parsed; one that is not an origin is named', () => {
    expect(loadConfig({}).web.origins).toContainEqual({ scheme: 'http', host: 'localhost', port: '*' });
    expect(loadConfig({ CHATFLOW_WEB_ORIGINS: '' }).web.origins.length).toBeGreaterThan(0); // empty = unset: the default
    expect(loadConfig({ CHATFLOW_WEB_ORIGINS: 'none' }).web.origins).toEqual([]);
    expect(loadConfig({ CHATFLOW_WEB_ORIGINS: 'https://app.example.com, *' }).web.origins).toEqual([{ scheme: 'https', host: 'app.example.com', port: '443' }, { any: true }]);
    expect(() => loadConfig({ CHATFLOW_WEB_ORIGINS: 'app.example.com' })).toThrow(/CHATFLOW_WEB_ORIGINS=.*"app\.example\.com" is not an origin: write scheme:\/\/host/);
  });

  it('given a short secret, when loaded, then it is refused', () => {
    expect(() => loadConfig({ CHATFLOW_AUTH_SECRET: 'short' })).toThrow(/at least 32/);
  });

  it('given the Sends read at once, in all and per client, and how long an upload may take, then they are the upload places\' sizes; none is refused', () => {
    expect(loadConfig({}).sends).toEqual({ atOnce: 16, perClient: 2, uploadTimeoutMs: 300_000 });
    expect(loadConfig({ CHATFLOW_SENDS_AT_ONCE: '64', CHATFLOW_SENDS_PER_CLIENT: '4', CHATFLOW_UPLOAD_TIMEOUT_MS: '60000' }).sends).toEqual({ atOnce: 64, perClient: 4, uploadTimeoutMs: 60_000 });
    expect(() => loadConfig({ CHATFLOW_SENDS_AT_ONCE: '0' })).toThrow(/CHATFLOW_SENDS_AT_ONCE/);
    expect(() => loadConfig({ CHATFLOW_UPLOAD_TIMEOUT_MS: '10' })).toThrow(/CHATFLOW_UPLOAD_TIMEOUT_MS/);
  });

  it('given the bound on one client\'s unanswered messages, then it defaults to one partition\'s places and refuses what is not a count', () => {
    expect(loadConfig({}).unansweredPerClient).toBe(50);
    expect(loadConfig({ CHATFLOW_UNANSWERED_PER_CLIENT: '10' }).unansweredPerClient).toBe(10);
    for (const bad of ['0', '-5', '2.5', 'lots', '1e9']) expect(() => loadConfig({ CHATFLOW_UNANSWERED_PER_CLIENT: bad })).toThrow(new RegExp(`CHATFLOW_UNANSWERED_PER_CLIENT="${bad.replace('.', '\\.')}"`));
  });

  it('documents every variable with its default', () => {
    expect(configTable()).toMatch(/\| `CHATFLOW_MAX_CLIENTS` \| `50` \|/);
  });
});

describe('variables that are not settings', () => {
  it('given a misspelt setting, then it is named as ignored, with the setting it is closest to', () => {
    expect(unknownSettings({ CHATFLOW_MAX_CLIENT: '10', CHATFLOW_MAXCLIENTS: '10', CHATFLOW_SENDS_PER_CLEINT: '1' })).toEqual([
      'CHATFLOW_MAX_CLIENT is not a ChatFlow setting and is ignored (did you mean CHATFLOW_MAX_CLIENTS?)',
      'CHATFLOW_MAXCLIENTS is not a ChatFlow setting and is ignored (did you mean CHATFLOW_MAX_CLIENTS?)',
      'CHATFLOW_SENDS_PER_CLEINT is not a ChatFlow setting and is ignored (did you mean CHATFLOW_SENDS_PER_CLIENT?)',
    ]);
  });

  it('given a name like no setting, then it is named as ignored, with no guess', () => {
    expect(unknownSettings({ CHATFLOW_COLOUR: 'blue' })).toEqual(['CHATFLOW_COLOUR is not a ChatFlow setting and is ignored']);
  });

  it('given settings, the scripts\' own variables and variables of other programs, then nothing is said', () => {
    expect(unknownSettings({ CHATFLOW_MAX_CLIENTS: '10', KAFKA_BROKERS: 'x:9092', CHATFLOW_STACK_DIR: '/tmp/s', PATH: '/bin', chatflow_max_clients: '3' })).toEqual([]);
  });

  it('every CHATFLOW_ variable the project\'s code and scripts name is a setting or one of the scripts\' own', () => {
    const root = join(__dirname, '..', '..');
    const named = execFileSync('git', ['grep', '-hoE', 'CHATFLOW_[A-Z0-9_]*[A-Z0-9]', '--', 'src', 'test', 'deploy', 'loadtest/*.ts', 'loadtest/**/*.ts', 'loadtest/**/*.cjs', 'scripts', '.ci', 'package.json', 'gateway', ':!src/config/config.unit.test.ts'], { cwd: root, encoding: 'utf8' });
    const known = new Set([...Object.keys(SETTINGS), ...SCRIPT_VARIABLES]);
    expect([...new Set(named.split('\n').filter(Boolean))].filter((n) => !known.has(n)).sort()).toEqual([]);
  });
});

describe('README', () => {
  it('shows the configuration table generated from the schema (npm run config:doc)', () => {
    const readme = require('node:fs').readFileSync(require('node:path').join(__dirname, '..', '..', 'README.md'), 'utf8') as string;
    expect(readme).toContain(configTable());
  });
});
