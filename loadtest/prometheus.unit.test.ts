import { bucketQuantile, parsePrometheus, stageTimings } from './target/prometheus';

describe('stage histograms from /metrics', () => {
  it('given cumulative buckets, then a quantile is the upper bound of the first bucket reaching it', () => {
    const b = [{ le: 0.001, count: 10 }, { le: 0.005, count: 90 }, { le: 0.025, count: 99 }, { le: Infinity, count: 100 }];
    expect(bucketQuantile(b, 0.5)).toBe(0.005);
    expect(bucketQuantile(b, 0.99)).toBe(0.025);
    expect(bucketQuantile(b, 1)).toBe(Infinity);
    expect(bucketQuantile([{ le: 0.001, count: 0 }], 0.5)).toBeNull();
  });

  it('given a scrape, then each label value of each stage histogram becomes one timing in ms', () => {
    const text = [
      '# HELP chatflow_log_append_seconds x',
      'chatflow_log_append_seconds_bucket{le="0.002",topic="conversations"} 3',
      'chatflow_log_append_seconds_bucket{le="0.01",topic="conversations"} 4',
      'chatflow_log_append_seconds_bucket{le="+Inf",topic="conversations"} 4',
      'chatflow_log_append_seconds_count{topic="conversations"} 4',
      'chatflow_log_append_seconds_bucket{le="0.002",topic="sessions"} 0',
      'chatflow_log_append_seconds_bucket{le="+Inf",topic="sessions"} 0',
      'chatflow_media_put_seconds_bucket{le="0.05",kind="upload"} 1',
      'chatflow_media_put_seconds_bucket{le="+Inf",kind="upload"} 2',
      'chatflow_projection_lag_seconds_bucket{le="0.005"} 98',
      'chatflow_projection_lag_seconds_bucket{le="0.05"} 100',
      'chatflow_projection_lag_seconds_bucket{le="+Inf"} 100',
    ].join('\n');
    expect(stageTimings('all', parsePrometheus(text))).toEqual([
      { process: 'all', stage: 'log append (conversations)', count: 4, p50Ms: 2, p99Ms: 10 },
      { process: 'all', stage: 'media put (upload)', count: 2, p50Ms: 50, p99Ms: Infinity },
      { process: 'all', stage: 'projection lag', count: 100, p50Ms: 5, p99Ms: 50 },
    ]);
  });

  it('given a histogram with two labels, then each pair of values is one timing, named by both', () => {
    const text = [
      'chatflow_message_stage_seconds_bucket{le="0.001",stage="accepted",kind="text"} 1',
      'chatflow_message_stage_seconds_bucket{le="0.1",stage="accepted",kind="text"} 2',
      'chatflow_message_stage_seconds_bucket{le="+Inf",stage="accepted",kind="text"} 2',
      'chatflow_message_stage_seconds_bucket{le="0.001",stage="accepted",kind="audio"} 0',
      'chatflow_message_stage_seconds_bucket{le="0.1",stage="accepted",kind="audio"} 1',
      'chatflow_message_stage_seconds_bucket{le="+Inf",stage="accepted",kind="audio"} 1',
    ].join('\n');
    expect(stageTimings('all', parsePrometheus(text))).toEqual([
      { process: 'all', stage: 'message → accepted (audio)', count: 1, p50Ms: 100, p99Ms: 100 },
      { process: 'all', stage: 'message → accepted (text)', count: 2, p50Ms: 1, p99Ms: 100 },
    ]);
  });
});
