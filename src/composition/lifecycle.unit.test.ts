import { decorate } from './instrument';
import { Lifecycle } from './lifecycle';

describe('Lifecycle', () => {
  const quiet = { error: jest.fn() };

  it('given steps done in order, when stopped, then undoes them in reverse, going on past a failing stop and naming the step it is at', async () => {
    const done: string[] = [];
    const life = new Lifecycle(quiet);
    const steps: string[] = [];
    life.onStop('a', async () => done.push('a'));
    life.onStop('b', async () => {
      steps.push(life.progress.step);
      throw new Error('b failed');
    });
    life.onStop('c', async () => done.push('c'));
    await life.stopAll();
    expect(done).toEqual(['c', 'a']);
    expect(steps).toEqual(['b']);
    expect(quiet.error).toHaveBeenCalledWith(expect.objectContaining({ step: 'b' }), 'shutdown step failed');
  });

  it('given a part whose start fails half-way, then what it had started is undone and the failure goes on; its stop is not registered', async () => {
    const done: string[] = [];
    const root = new Lifecycle(quiet);
    const parts = root.child();
    const part = {
      start: () =>
        parts.all(async () => {
          parts.onStop('first', async () => done.push('first'));
          throw new Error('second could not start');
        }),
      stop: () => parts.stopAll(),
    };
    await expect(root.start('part', part)).rejects.toThrow('second could not start');
    expect(done).toEqual(['first']);
    await root.stopAll();
    expect(done).toEqual(['first']);
  });
});

describe('decorate', () => {
  class Port {
    calls = 0;
    hot(x: number): number {
      this.calls++;
      return x * 2;
    }
    other(): number {
      return this.calls;
    }
    optional?: () => string;
  }

  it('replaces the named method only, leaves the port as it was, and passes every other member through bound to the port', () => {
    const port = new Port();
    const seen: number[] = [];
    const wrapped = decorate(port, { hot: (x) => (seen.push(x), port.hot(x)) });
    expect(wrapped.hot(2)).toBe(4);
    expect(seen).toEqual([2]);
    const { other } = wrapped;
    expect(other()).toBe(1);
    expect(port.hot).toBe(Port.prototype.hot);
    expect(wrapped.optional).toBeUndefined();
    port.optional = () => 'now there';
    expect(wrapped.optional?.()).toBe('now there');
  });
});
