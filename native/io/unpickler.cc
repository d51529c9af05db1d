#include "io/unpickler.h"

#include <cstring>
#include <map>
#include <stdexcept>
#include <unordered_map>

namespace sdtorch::pickle {
namespace {

const std::map<std::string, at::ScalarType> kStorageTypes = {
    {"torch.FloatStorage", at::kFloat},   {"torch.HalfStorage", at::kHalf},    {"torch.BFloat16Storage", at::kBFloat16},
    {"torch.DoubleStorage", at::kDouble}, {"torch.LongStorage", at::kLong},    {"torch.IntStorage", at::kInt},
    {"torch.ShortStorage", at::kShort},   {"torch.CharStorage", at::kChar},    {"torch.ByteStorage", at::kByte},
    {"torch.BoolStorage", at::kBool},
};
// Callables REDUCE may apply; each is implemented here, never looked up.
const char* kCallables[] = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"};
// What real checkpoints carry besides tensors (the allow-list of A1111's safe unpickler): numpy
// scalars and arrays (`global_step`), their dtypes, the bytes protocol 2 writes through
// _codecs.encode, sets, and Lightning's callbacks (SD 1.4's .ckpt keys "callbacks" by the
// ModelCheckpoint class). They become inert placeholders: never imported, never called.
const char* kInert[] = {
    "numpy.core.multiarray.scalar", "numpy.core.multiarray._reconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray", "_codecs.encode", "builtins.set",
    "__builtin__.set", "builtins.frozenset", "__builtin__.frozenset",
    // older textual-inversion .pt files keep their vectors in a ParameterDict (its state holds them)
    "torch.nn.modules.container.ParameterDict",
};
// Whole modules of inert classes; the trailing dot keeps "pytorch_lightning.callbacksX" out.
const char* kInertModules[] = {"pytorch_lightning.callbacks.", "lightning.pytorch.callbacks."};

bool is_inert(const std::string& name) {
  for (const char* n : kInert)
    if (name == n) return true;
  for (const char* m : kInertModules)
    if (name.rfind(m, 0) == 0) return true;
  return false;
}

Ref make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }

std::vector<int64_t> ints(const Ref& v, const char* what) {
  if (v->kind != Value::Tuple && v->kind != Value::List) fail(std::string("expected a tuple for ") + what);
  std::vector<int64_t> out;
  for (auto& x : v->items) {
    if (x->kind != Value::Int) fail(std::string("expected integers in ") + what);
    out.push_back(x->i);
  }
  return out;
}

Ref rebuild_tensor(const std::vector<Ref>& args) {
  if (args.size() < 4 || args[0]->kind != Value::Tensor || args[1]->kind != Value::Int)
    fail("damaged tensor record in the pickle");
  const at::Tensor& storage = args[0]->tensor;
  int64_t offset = args[1]->i;
  auto size = ints(args[2], "tensor size"), stride = ints(args[3], "tensor stride");
  if (size.size() != stride.size()) fail("damaged tensor record (size and stride differ in rank)");
  // The last element the view reaches must lie in the storage; an empty view reaches none.
  int64_t last = offset;
  bool empty = false, overflow = false;
  for (size_t d = 0; d < size.size(); ++d) {
    if (size[d] < 0 || stride[d] < 0) fail("damaged tensor record (negative size or stride)");
    int64_t reach = 0;
    if (size[d] == 0) empty = true;
    else overflow |= __builtin_mul_overflow(size[d] - 1, stride[d], &reach) || __builtin_add_overflow(last, reach, &last);
  }
  if (offset < 0 || overflow || (!empty && last >= storage.numel()))
    fail("damaged tensor record (view beyond its storage)");
  auto t = make(Value::Tensor);
  t->tensor = storage.as_strided(size, stride, offset);
  return t;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* d, size_t n, const StorageLoader& l) : p_(d), end_(d + n), load_(l) {}

  // Empties every value made, which breaks any reference cycle among them.
  void release() {
    stack_.clear();
    memo_.clear();
    for (auto& w : made_)
      if (Ref v = w.lock()) {
        v->items.clear();
        v->entries.clear();
        v->state.reset();
      }
  }

  Ref run() {
    while (true) {
      uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                                  // PROTO
        case 0x95: take(8); break;                               // FRAME
        case '.': return pop();                                   // STOP
        case '}': push(make(Value::Dict)); break;                 // EMPTY_DICT
        case ']': push(make(Value::List)); break;                 // EMPTY_LIST
        case ')': push(make(Value::Tuple)); break;                // EMPTY_TUPLE
        case '(': marks_.push_back(stack_.size()); break;         // MARK
        case 'N': push(make(Value::None)); break;
        case 0x88: case 0x89: { auto b = make(Value::Bool); b->i = op == 0x88; push(b); break; }
        case 'K': push_int(u8()); break;                          // BININT1
        case 'M': push_int(le(2)); break;                         // BININT2
        case 'J': push_int(int32_t(le(4))); break;                // BININT
        case 0x8a: {                                              // LONG1
          size_t n = u8();
          if (n > 8) fail("integer too large in the pickle");
          uint64_t v = n ? le(n) : 0;
          if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);  // sign-extend
          push_int(int64_t(v));
          break;
        }
        case 'G': {                                               // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | u8();
          auto f = make(Value::Float);
          std::memcpy(&f->f, &bits, 8);
          push(f);
          break;
        }
        case 'X': push_str(le(4)); break;                         // BINUNICODE
        case 0x8c: push_str(u8()); break;                         // SHORT_BINUNICODE
        case 'T': push_str(le(4)); break;                         // BINSTRING
        case 'U': push_str(u8()); break;                          // SHORT_BINSTRING
        case 'B': push_str(le(4)); break;                         // BINBYTES
        case 'C': push_str(u8()); break;                          // SHORT_BINBYTES
        case 'q': memo_[u8()] = top(); break;                     // BINPUT
        case 'r': memo_[le(4)] = top(); break;                    // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;            // MEMOIZE
        case 'h': push(memo(u8())); break;                        // BINGET
        case 'j': push(memo(le(4))); break;                       // LONG_BINGET
        case 't': { auto t = make(Value::Tuple); t->items = pop_mark(); push(t); break; }
        case 0x85: case 0x86: case 0x87: {                        // TUPLE1..3
          auto t = make(Value::Tuple);
          t->items.resize(op - 0x84);
          for (size_t i = t->items.size(); i-- > 0;) t->items[i] = pop();
          push(t);
          break;
        }
        case 'l': { auto l = make(Value::List); l->items = pop_mark(); push(l); break; }  // LIST
        case 'a': { auto v = pop(); list(top())->items.push_back(v); break; }            // APPEND
        case 'e': { auto vs = pop_mark(); auto& l = list(top())->items; l.insert(l.end(), vs.begin(), vs.end()); break; }
        case 's': { auto v = pop(); auto k = pop(); dict(top())->entries.emplace_back(k, v); break; }  // SETITEM
        case 'u': {                                               // SETITEMS
          auto vs = pop_mark();
          if (vs.size() % 2) fail("damaged pickle (odd SETITEMS)");
          auto d = dict(top());
          for (size_t i = 0; i < vs.size(); i += 2) d->entries.emplace_back(vs[i], vs[i + 1]);
          break;
        }
        case 'c': {                                               // GLOBAL "module\nname\n"
          std::string mod = line(), name = line();
          push(global(mod + "." + name));
          break;
        }
        case 0x93: {                                              // STACK_GLOBAL
          auto name = pop(), mod = pop();
          if (name->kind != Value::Str || mod->kind != Value::Str) fail("damaged pickle (STACK_GLOBAL)");
          push(global(mod->s + "." + name->s));
          break;
        }
        case 0x8f: push(make(Value::Set)); break;                 // EMPTY_SET
        case 0x90: {                                              // ADDITEMS
          auto vs = pop_mark();
          auto& set = top();
          if (set->kind != Value::Set) fail("damaged pickle (ADDITEMS to a non-set)");
          set->items.insert(set->items.end(), vs.begin(), vs.end());
          break;
        }
        case 0x91: { auto v = make(Value::Set); v->items = pop_mark(); push(v); break; }  // FROZENSET
        case 'Q': push(persistent(pop())); break;                 // BINPERSID
        case 'R': {                                               // REDUCE
          auto args = pop(), fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 0x81: {                                              // NEWOBJ: cls.__new__(cls, *args)
          auto args = pop(), cls = pop();
          if (cls->kind != Value::Inert)
            fail("refused: pickle opcode NEWOBJ on " + (cls->kind == Value::Global ? "'" + cls->s + "'" : std::string("a non-class")) +
                 " is not allowed in a checkpoint (only inert placeholders are instantiated)");
          push(inert_call(cls, args));
          break;
        }
        case 'b': {                                               // BUILD
          auto state = pop();
          auto& obj = top();
          if (obj->kind == Value::Object) obj->state = state;     // recorded, never applied
          // the state of an OrderedDict (_metadata) or a tensor is dropped
          else if (obj->kind != Value::Dict && obj->kind != Value::Tensor) fail("refused: BUILD on a non-dict object");
          break;
        }
        default: {
          char buf[64];
          snprintf(buf, sizeof buf, "refused: pickle opcode 0x%02x is not allowed in a checkpoint", op);
          fail(buf);
        }
      }
    }
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  const StorageLoader& load_;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Ref> memo_;
  std::vector<std::weak_ptr<Value>> made_;  // every value made, for release()

  const uint8_t* take(size_t n) {
    if (size_t(end_ - p_) < n) fail("damaged pickle (truncated)");
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  uint8_t u8() { return *take(1); }
  uint64_t le(size_t n) {
    const uint8_t* b = take(n);
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | b[i];
    return v;
  }
  std::string line() {
    const uint8_t* s = p_;
    while (p_ < end_ && *p_ != '\n') ++p_;
    if (p_ >= end_) fail("damaged pickle (truncated GLOBAL)");
    return std::string(reinterpret_cast<const char*>(s), p_++ - s);
  }
  void push(Ref v) {
    if (stack_.size() > (1u << 24)) fail("damaged pickle (stack overflow)");
    made_.push_back(v);  // every value passes the stack (memo values again: harmless)
    stack_.push_back(std::move(v));
  }
  void push_int(int64_t i) { auto v = make(Value::Int); v->i = i; push(v); }
  void push_str(uint64_t n) {
    auto v = make(Value::Str);
    v->s.assign(reinterpret_cast<const char*>(take(n)), n);
    push(v);
  }
  Ref pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("damaged pickle (stack underflow)");
    Ref v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  Ref& top() {
    if (stack_.empty()) fail("damaged pickle (empty stack)");
    return stack_.back();
  }
  std::vector<Ref> pop_mark() {
    if (marks_.empty()) fail("damaged pickle (no MARK)");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Ref> out(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return out;
  }
  Ref memo(uint64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) fail("damaged pickle (unknown memo key)");
    return it->second;
  }
  static Ref list(const Ref& v) {
    if (v->kind != Value::List) fail("damaged pickle (APPEND to a non-list)");
    return v;
  }
  static Ref dict(const Ref& v) {
    if (v->kind != Value::Dict) fail("damaged pickle (SETITEM on a non-dict)");
    return v;
  }
  static Ref global(const std::string& name) {
    auto st = kStorageTypes.find(name);
    if (st != kStorageTypes.end()) {
      auto v = make(Value::StorageType);
      v->s = name;
      v->dtype = st->second;
      return v;
    }
    for (const char* c : kCallables)
      if (name == c) {
        auto v = make(Value::Global);
        v->s = name;
        return v;
      }
    if (is_inert(name)) {
      auto v = make(Value::Inert);
      v->s = name;
      return v;
    }
    fail("refused: the checkpoint references '" + name +
         "', which is not a tensor, storage, plain container or known inert object (numpy scalar, Lightning "
         "callback); it may contain code, so it was not loaded. "
         "Convert it to .safetensors with a tool you trust, or re-save only its state_dict.");
  }
  // A record of calling an inert global: its name and arguments, nothing evaluated.
  static Ref inert_call(const Ref& fn, const Ref& args) {
    if (args->kind != Value::Tuple) fail("damaged pickle (arguments of '" + fn->s + "' are not a tuple)");
    auto o = make(Value::Object);
    o->s = fn->s;
    o->items = args->items;
    return o;
  }
  Ref persistent(const Ref& pid) {
    // ('storage', StorageType, key, location, numel)
    if (pid->kind != Value::Tuple || pid->items.size() < 5 || pid->items[0]->kind != Value::Str ||
        pid->items[0]->s != "storage" || pid->items[1]->kind != Value::StorageType || pid->items[2]->kind != Value::Str ||
        pid->items[4]->kind != Value::Int)
      fail("refused: unknown persistent id in the checkpoint");
    auto t = make(Value::Tensor);
    t->tensor = load_(pid->items[2]->s, pid->items[1]->dtype, pid->items[4]->i);
    return t;
  }
  static Ref reduce(const Ref& fn, const Ref& args) {
    if (fn->kind == Value::Inert) return inert_call(fn, args);
    if (fn->kind != Value::Global) fail("refused: REDUCE on something that is not an allowed callable");
    if (args->kind != Value::Tuple) fail("damaged pickle (REDUCE arguments)");
    if (fn->s == "collections.OrderedDict") {
      if (!args->items.empty()) fail("refused: OrderedDict with arguments");
      return make(Value::Dict);
    }
    if (fn->s == "torch._utils._rebuild_tensor_v2") return rebuild_tensor(args->items);
    // _rebuild_parameter(data, requires_grad, backward_hooks): the data is all we keep.
    if (args->items.empty() || args->items[0]->kind != Value::Tensor) fail("damaged parameter record");
    return args->items[0];
  }
};

}  // namespace

void unpickle(const uint8_t* data, size_t size, const StorageLoader& load_storage, const std::function<void(const Ref& root)>& use) {
  Unpickler u(data, size, load_storage);
  struct Release {
    Unpickler& u;
    ~Release() { u.release(); }
  } release{u};
  use(u.run());
}

}  // namespace sdtorch::pickle
