using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Mblm.Training;

/// <summary>
/// Identifies training data for <see cref="TrainerOptions.Data"/>: the number of samples, their tokens and a SHA-256 over
/// every sample's token ids and loss weights (epoch 0, in index order). Two sources with the same fingerprint give the same
/// training run; a resume over other data is refused (<see cref="CheckpointMismatchException"/> names <c>data.*</c>).
/// </summary>
/// <param name="Samples">Samples in epoch 0.</param>
/// <param name="Tokens">Tokens in all of them.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of the samples' lengths, ids and loss weights.</param>
public sealed record DataFingerprint(long Samples, long Tokens, string Sha256)
{
    /// <summary>Reads every sample of epoch 0 of <paramref name="source"/> once.</summary>
    public static DataFingerprint Of(ISampleSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long count = source.Count(0), tokens = 0;
        Span<byte> word = stackalloc byte[8];
        for (long i = 0; i < count; i++)
        {
            var sample = source.Get(0, i);
            BinaryPrimitives.WriteInt64LittleEndian(word, sample.Ids.Length);
            hash.AppendData(word);
            foreach (long id in sample.Ids)
            {
                BinaryPrimitives.WriteInt64LittleEndian(word, id);
                hash.AppendData(word);
            }
            foreach (float w in sample.LossMask)
            {
                BinaryPrimitives.WriteSingleLittleEndian(word[..4], w);
                hash.AppendData(word[..4]);
            }
            if (sample.Label >= 0)
            {
                // Classes are part of labelled data (unlabelled samples hash as before, so their fingerprints do not change).
                BinaryPrimitives.WriteInt32LittleEndian(word[..4], sample.Label);
                hash.AppendData(word[..4]);
            }
            tokens += sample.Ids.Length;
        }
        return new DataFingerprint(count, tokens, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }
}
