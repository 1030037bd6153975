"""The AI domain: is a post a car-sale ad, what car is it, and a short factual summary.

Plain functions and classes, no Celery and no database (the task layer and the pipeline wrap them):

- :mod:`cars_bot.ai.schemas`: the result types (Classification, CarData, Analysis, Usage) and the
  canonical brand/model spellings;
- :mod:`cars_bot.ai.text`: normalisation and hashing, so reposts of one ad share a hash;
- :mod:`cars_bot.ai.rules`: the deterministic, offline backend (classify, extract, summarize, analyse);
- :mod:`cars_bot.ai.openai_backend`: one structured-output OpenAI request per post (imports openai lazily).

Nothing is imported here on purpose: ``import cars_bot.ai`` must stay cheap for the CLI.
"""
