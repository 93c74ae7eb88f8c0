// Picks the provider from configuration (LLM_PROVIDER and friends, DESIGN.md).
import { OpenAiCompatibleLlm } from './openai';
import { LlmProvider } from './port';
import { SimulatedLlm } from './simulated';

export interface LlmProviderConfig {
  provider: 'simulated' | 'openai';
  baseUrl?: string;
  apiKey?: string;
  model?: string;
  timeoutMs: number;
  delayScale: number;
}

/** Used when LLM_MODEL is unset; servers that host one model usually ignore the name. */
export const DEFAULT_OPENAI_MODEL = 'gpt-4o-mini';

export function createLlmProvider(cfg: LlmProviderConfig): LlmProvider {
  switch (cfg.provider) {
    case 'simulated':
      return new SimulatedLlm({ delayScale: cfg.delayScale });
    case 'openai': {
      // The configuration checked the URL (src/config/schema.ts); this only narrows its type.
      if (!cfg.baseUrl) throw new Error('LLM_PROVIDER=openai requires LLM_BASE_URL (e.g. http://localhost:8000/v1)');
      if (!(cfg.timeoutMs > 0)) throw new Error(`LLM timeout must be > 0 ms, got ${cfg.timeoutMs}`);
      return new OpenAiCompatibleLlm({
        baseUrl: cfg.baseUrl,
        apiKey: cfg.apiKey || undefined,
        model: cfg.model?.trim() || DEFAULT_OPENAI_MODEL,
        timeoutMs: cfg.timeoutMs,
      });
    }
    default:
      throw new Error(`unknown LLM provider "${(cfg as { provider: string }).provider}" (expected simulated or openai)`);
  }
}
