using System.Collections.Concurrent;
using Mblm.MLNet;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.ML;

namespace Mblm.Examples.Serving;

/// <summary>The request body of <c>POST /score</c>.</summary>
public sealed record ScoreRequest(string Text);

/// <summary>The answer of <c>POST /score</c>: the model's bits per byte on the text (lower = more like its training data).</summary>
public sealed record ScoreResponse(float BitsPerByte);

/// <summary>The input row of the served pipeline (a language model over a <c>Text</c> column).</summary>
public sealed class TextInput
{
    /// <summary>The text to score.</summary>
    public string Text { get; set; } = "";
}

/// <summary>The pipeline's output read by the service.</summary>
public sealed class ScoreOutput
{
    /// <summary>Bits per byte of the row.</summary>
    public float BitsPerByte { get; set; }
}

/// <summary>
/// A saved pipeline loaded once and shared by every request. A <see cref="PredictionEngine{TSrc, TDst}"/> is not
/// thread-safe, so each request borrows one from a pool and returns it; the engines share the one loaded model, whose
/// forwards run concurrently (no lock around them), so throughput grows with the cores.
/// </summary>
public sealed class ScoringService : IDisposable
{
    private readonly MLContext _ml = new();
    private readonly ITransformer _model;
    private readonly ConcurrentBag<PredictionEngine<TextInput, ScoreOutput>> _engines = [];

    /// <summary>Loads the pipeline saved at <paramref name="modelPath"/> (<c>mlContext.Mblm().SaveModel</c>).</summary>
    public ScoringService(string modelPath)
    {
        _model = _ml.Mblm().LoadModel(modelPath, out _);
    }

    /// <summary>Scores one text.</summary>
    public ScoreResponse Score(string text)
    {
        if (!_engines.TryTake(out var engine))
            engine = _ml.Model.CreatePredictionEngine<TextInput, ScoreOutput>(_model, new PredictionEngineOptions { OwnsTransformer = false });
        try
        {
            return new ScoreResponse(engine.Predict(new TextInput { Text = text }).BitsPerByte);
        }
        finally
        {
            _engines.Add(engine);
        }
    }

    /// <summary>Maps <c>POST /score</c> (JSON <c>{"text": "..."}</c>) and <c>GET /health</c> onto <paramref name="app"/>.</summary>
    public void Map(WebApplication app)
    {
        app.MapPost("/score", (ScoreRequest request) =>
            request.Text is null ? Results.BadRequest("the body needs a \"text\" string") : Results.Ok(Score(request.Text)));
        app.MapGet("/health", () => Results.Ok("ok"));
    }

    /// <summary>Frees the engines and the model's native memory.</summary>
    public void Dispose()
    {
        while (_engines.TryTake(out var engine)) engine.Dispose();
        (_model as IDisposable)?.Dispose();
    }

    /// <summary>A web app serving <paramref name="modelPath"/> on <paramref name="url"/> (e.g. <c>http://127.0.0.1:0</c> for a free port).</summary>
    public static (WebApplication App, ScoringService Service) Build(string modelPath, string url)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(url);
        var app = builder.Build();
        var service = new ScoringService(modelPath);
        service.Map(app);
        return (app, service);
    }
}
