// Test tiers live in the file name: *.unit.test.ts (pure, fast),
// *.int.test.ts (adapters; real engines when configured),
// *.e2e.test.ts (the real server on ephemeral ports, real gRPC clients).
const transform = { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] };
// Only the project's own folders are crawled: .stack/ holds gigabytes of engine sources and Go modules.
const roots = ['src', 'test', 'projections', 'loadtest', 'gateway', 'scripts'].map((d) => `<rootDir>/${d}`);
const base = { testEnvironment: 'node', transform, moduleFileExtensions: ['ts', 'js', 'json'], roots };
module.exports = {
  globalSetup: '<rootDir>/test/engines-setup.js',
  globalTeardown: '<rootDir>/test/engines-report.js',
  projects: [
    { ...base, displayName: 'unit', testMatch: ['<rootDir>/**/*.unit.test.ts'], testPathIgnorePatterns: ['/node_modules/', '/.stack/'] },
    { ...base, displayName: 'int', testMatch: ['<rootDir>/**/*.int.test.ts'], testPathIgnorePatterns: ['/node_modules/', '/.stack/'] },
    { ...base, displayName: 'e2e', testMatch: ['<rootDir>/**/*.e2e.test.ts'], testPathIgnorePatterns: ['/node_modules/', '/.stack/'] },
  ],
};
