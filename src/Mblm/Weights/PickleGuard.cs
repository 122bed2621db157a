using System.Buffers.Binary;
using System.Text;

namespace Mblm.Weights;

/// <summary>
/// A pickle that names a Python global (a function or class) outside the allow-list of a weights file. Python's own
/// unpickler would import and call it (<c>os.system</c>, <c>builtins.eval</c>, …); this library refuses the file before
/// unpickling anything.
/// </summary>
public sealed class ForbiddenPickleGlobalException : MblmFormatException
{
    /// <summary>The global's module (<c>os</c>, <c>builtins</c>, …).</summary>
    public string Module { get; }

    /// <summary>The global's name inside its module (<c>system</c>, <c>eval</c>, …).</summary>
    public string Name { get; }

    internal ForbiddenPickleGlobalException(string file, string entry, string module, string name)
        : base(file, entry, $"refers to the Python global '{module}.{name}', which is not allowed in a weights file " +
                            $"(allowed: {PickleGuard.DescribeAllowList()}); the file is refused without being unpickled")
        => (Module, Name) = (module, name);
}

/// <summary>
/// Checks a pickle (the <c>data.pkl</c> of a <c>torch.save</c> file) before it is unpickled, without executing it: every
/// opcode is parsed with its argument bounded by the bytes that remain, and every global it names (<c>GLOBAL</c>,
/// <c>INST</c>, <c>STACK_GLOBAL</c>) must be on <see cref="AllowedGlobals"/>. Opcodes a state dict never needs are refused:
/// the extension registry (<c>EXT1/2/4</c>), text persistent ids (<c>PERSID</c>), out-of-band buffers, and a
/// <c>STACK_GLOBAL</c> whose module and name are not the two string literals pushed just before it.
/// </summary>
public static class PickleGuard
{
    /// <summary>
    /// The globals a weights pickle may name: the tensor rebuild function, the typed storages of the supported dtypes
    /// (named in persistent ids), and <c>collections.OrderedDict</c> (state dicts and their metadata).
    /// </summary>
    public static readonly IReadOnlySet<string> AllowedGlobals = new HashSet<string>(StringComparer.Ordinal)
    {
        "torch._utils._rebuild_tensor_v2",
        "collections.OrderedDict",
        "torch.DoubleStorage", "torch.FloatStorage", "torch.HalfStorage", "torch.BFloat16Storage",
        "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage", "torch.ByteStorage", "torch.BoolStorage",
    };

    /// <summary>Longest text argument (a line: a global's module or name, a decimal number) accepted.</summary>
    public const int MaxLineBytes = 1024;

    /// <summary>Longest arbitrary-precision integer (<c>LONG1</c>/<c>LONG4</c>, <c>LONG</c>) accepted, in bytes or digits.</summary>
    public const int MaxLongBytes = 64;

    internal static string DescribeAllowList() => "torch._utils._rebuild_tensor_v2, collections.OrderedDict, torch.<Type>Storage";

    /// <summary>
    /// Walks <paramref name="pickle"/> opcode by opcode. Throws <see cref="ForbiddenPickleGlobalException"/> for a global
    /// outside the allow-list and <see cref="MblmFormatException"/> (naming <paramref name="file"/> and
    /// <paramref name="entry"/>, and the byte offset) for a malformed or refused opcode, or bytes after <c>STOP</c>.
    /// </summary>
    public static void Check(ReadOnlySpan<byte> pickle, string file, string entry)
    {
        // The values of the most recent stack-changing opcodes: a string literal (or a memo get of one), else null.
        var recent = new List<string?>();
        var memo = new Dictionary<long, string?>();
        int at = 0;
        while (true)
        {
            if (at >= pickle.Length) throw new MblmFormatException(file, entry, $"the pickle ends at byte {at} without a STOP opcode");
            int start = at;
            byte op = pickle[at++];
            MblmFormatException Bad(string problem) => new(file, entry, $"pickle opcode 0x{op:x2} at byte {start}: {problem}");
            ReadOnlySpan<byte> Take(long count, ReadOnlySpan<byte> data)
            {
                if (count < 0 || count > data.Length - at) throw Bad($"its argument claims {count} bytes, {data.Length - at} remain");
                var s = data.Slice(at, (int)count);
                at += (int)count;
                return s;
            }
            string Line(ReadOnlySpan<byte> data)
            {
                int end = data[at..].IndexOf((byte)'\n');
                if (end < 0 || end > MaxLineBytes) throw Bad($"needs a text argument of at most {MaxLineBytes} bytes ending in a newline");
                string text = Encoding.ASCII.GetString(data.Slice(at, end));
                at += end + 1;
                return text;
            }
            long Length(int bytes, ReadOnlySpan<byte> data)
            {
                var b = Take(bytes, data);
                return bytes switch
                {
                    1 => b[0],
                    4 => BinaryPrimitives.ReadUInt32LittleEndian(b),
                    _ => (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(b), long.MaxValue),
                };
            }
            void Push(string? value = null) => recent.Add(value);
            void Global(string module, string name)
            {
                if (!AllowedGlobals.Contains(module + "." + name)) throw new ForbiddenPickleGlobalException(file, entry, module, name);
            }

            switch (op)
            {
                case 0x2e: // STOP
                    if (at != pickle.Length) throw Bad($"{pickle.Length - at} bytes follow the pickle's STOP");
                    return;
                case 0x80: Take(1, pickle); break; // PROTO
                case 0x95: Take(8, pickle); break; // FRAME (a length hint; frames are not trusted)
                case 0x28: Push(); break; // MARK
                case 0x30 or 0x31 or 0x32: Push(); break; // POP, POP_MARK, DUP: the top is no longer a known literal
                case 0x46 or 0x49 or 0x4c: // FLOAT, INT, LONG (text)
                    if (Line(pickle).Length > MaxLongBytes) throw Bad($"a number longer than {MaxLongBytes} digits");
                    Push();
                    break;
                case 0x4a: Take(4, pickle); Push(); break; // BININT
                case 0x4b: Take(1, pickle); Push(); break; // BININT1
                case 0x4d: Take(2, pickle); Push(); break; // BININT2
                case 0x47: Take(8, pickle); Push(); break; // BINFLOAT
                case 0x8a or 0x8b: // LONG1, LONG4
                    if (Length(op == 0x8a ? 1 : 4, pickle) is var n && n > MaxLongBytes) throw Bad($"an integer of {n} bytes; at most {MaxLongBytes} are read");
                    Take(n, pickle);
                    Push();
                    break;
                case 0x4e or 0x88 or 0x89: Push(); break; // NONE, NEWTRUE, NEWFALSE
                case 0x53: Line(pickle); Push(); break; // STRING (quoted; never a global's operand)
                case 0x56: Push(Line(pickle)); break; // UNICODE (raw-unicode-escaped; ASCII names only matter)
                case 0x58: Push(Utf8(Take(Length(4, pickle), pickle))); break; // BINUNICODE
                case 0x8c: Push(Utf8(Take(Length(1, pickle), pickle))); break; // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(Take(Length(8, pickle), pickle))); break; // BINUNICODE8
                case 0x54: Take(Length(4, pickle), pickle); Push(); break; // BINSTRING
                case 0x55: Take(Length(1, pickle), pickle); Push(); break; // SHORT_BINSTRING
                case 0x42: Take(Length(4, pickle), pickle); Push(); break; // BINBYTES
                case 0x43: Take(Length(1, pickle), pickle); Push(); break; // SHORT_BINBYTES
                case 0x8e or 0x96: Take(Length(8, pickle), pickle); Push(); break; // BINBYTES8, BYTEARRAY8
                case 0x5d or 0x7d or 0x29 or 0x8f: Push(); break; // EMPTY_LIST, EMPTY_DICT, EMPTY_TUPLE, EMPTY_SET
                case 0x61 or 0x65 or 0x73 or 0x75 or 0x90: Push(); break; // APPEND, APPENDS, SETITEM, SETITEMS, ADDITEMS
                case 0x6c or 0x64 or 0x74 or 0x85 or 0x86 or 0x87 or 0x91: Push(); break; // LIST, DICT, TUPLE, TUPLE1-3, FROZENSET
                case 0x52 or 0x62 or 0x81 or 0x92 or 0x6f or 0x51: Push(); break; // REDUCE, BUILD, NEWOBJ, NEWOBJ_EX, OBJ, BINPERSID
                case 0x63 or 0x69: // GLOBAL, INST: module and name inline
                    Global(Line(pickle), Line(pickle));
                    Push();
                    break;
                case 0x93: // STACK_GLOBAL: module and name are the two values below the top
                    if (recent.Count < 2 || recent[^2] is not string module || recent[^1] is not string name)
                        throw Bad("a STACK_GLOBAL whose module and name are not the string literals pushed just before it");
                    Global(module, name);
                    Push();
                    break;
                case 0x94: memo[memo.Count] = recent.Count > 0 ? recent[^1] : null; break; // MEMOIZE
                case 0x70: memo[Index(Line(pickle), Bad)] = recent.Count > 0 ? recent[^1] : null; break; // PUT
                case 0x71: memo[Length(1, pickle)] = recent.Count > 0 ? recent[^1] : null; break; // BINPUT
                case 0x72: memo[Length(4, pickle)] = recent.Count > 0 ? recent[^1] : null; break; // LONG_BINPUT
                case 0x67: Push(memo.GetValueOrDefault(Index(Line(pickle), Bad))); break; // GET
                case 0x68: Push(memo.GetValueOrDefault(Length(1, pickle))); break; // BINGET
                case 0x6a: Push(memo.GetValueOrDefault(Length(4, pickle))); break; // LONG_BINGET
                case 0x50: throw Bad("a text persistent id (PERSID); torch.save writes binary ones");
                case 0x82 or 0x83 or 0x84: throw Bad("an extension-registry global (EXT1/EXT2/EXT4), which cannot be checked against the allow-list");
                case 0x97 or 0x98: throw Bad("an out-of-band buffer (NEXT_BUFFER/READONLY_BUFFER)");
                default: throw Bad("not a pickle opcode");
            }
            if (recent.Count > 64) recent.RemoveRange(0, recent.Count - 2);
        }
    }

    private static string? Utf8(ReadOnlySpan<byte> bytes)
    {
        try { return new UTF8Encoding(false, true).GetString(bytes); }
        catch (DecoderFallbackException) { return null; }
    }

    private static long Index(string text, Func<string, MblmFormatException> bad) =>
        long.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long i)
            ? i : throw bad($"memo index '{text}' is not a non-negative integer");
}
