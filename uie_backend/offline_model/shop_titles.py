"""Generated shop-listing titles with their 产品 (product) spans: the licence-clean way to teach 产品.

No Chinese corpus that annotates products states a licence that allows shipping a model trained on it (the
e-commerce set the shipped chain learns 产品 from states none), so a recipe that trains only on text whose
licence allows it has no 产品 teacher. Listing titles are keyword strings ("家用防尘厨房厨师帽子车间…卫生帽"),
so stringing words together is close to the real thing: the word lists below were written for this project,
and a title marks only the product nouns (帽子, 工作帽), never the words around them (家用, 防尘, 男女, a place,
a size). Scored on a real set (the e-commerce dev split), never on generated titles.
"""

from __future__ import annotations

import random
from pathlib import Path

SOURCE = ("shop-listing titles generated from word lists written for this project "
          "(`uie_backend/offline_model/shop_titles.py`)")
UNLABELLED = False  # generated with its 产品 spans
POOL = 20_000       # titles generated; a spec's "sentences" samples from them
SEED = 11

PRODUCTS = """
T恤 衬衫 连衣裙 半身裙 牛仔裤 休闲裤 运动裤 短裤 卫衣 毛衣 针织衫 外套 夹克 风衣 羽绒服 棉服 西装 马甲 睡衣 内衣
文胸 内裤 袜子 丝袜 打底裤 帽子 棒球帽 渔夫帽 工作帽 围巾 手套 腰带 领带 运动鞋 跑步鞋 帆布鞋 板鞋 皮鞋 高跟鞋 凉鞋
拖鞋 雪地靴 马丁靴 双肩包 手提包 钱包 行李箱 旅行包 背包 斜挎包 手机 手机壳 钢化膜 充电器 数据线 充电宝 耳机
蓝牙耳机 音箱 笔记本电脑 平板电脑 键盘 鼠标 显示器 路由器 U盘 移动硬盘 内存卡 打印机 摄像头 智能手表 手环 相机
镜头 三脚架 电视 空调 冰箱 洗衣机 热水器 微波炉 电饭煲 电磁炉 电水壶 榨汁机 豆浆机 咖啡机 吸尘器 扫地机器人
电风扇 取暖器 加湿器 空气净化器 吹风机 剃须刀 电动牙刷 台灯 吸顶灯 插座 洗发水 护发素 沐浴露 洗面奶 爽肤水
面霜 眼霜 精华液 面膜 防晒霜 护手霜 身体乳 口红 粉底液 眼影 睫毛膏 香水 卸妆水 牙膏 牙刷 毛巾 浴巾 纸巾 湿巾
洗衣液 洗洁精 垃圾袋 保鲜膜 拖把 收纳箱 衣架 床单 被套 枕头 四件套 蚕丝被 床垫 窗帘 地毯 沙发 餐桌 椅子 书桌
书架 衣柜 鞋柜 茶几 炒锅 不锈钢锅 菜刀 砧板 保温杯 水杯 马克杯 餐具 碗 盘子 筷子 饭盒 奶粉 纸尿裤 奶瓶 婴儿车
儿童座椅 玩具 积木 拼图 毛绒玩具 绘本 书包 文具 笔记本 中性笔 铅笔 橡皮 茶叶 绿茶 红茶 咖啡 牛奶 酸奶 饼干
巧克力 坚果 大米 食用油 蜂蜜 红酒 白酒 啤酒 矿泉水 月饼 粽子 猫粮 狗粮 猫砂 宠物窝 瑜伽垫 哑铃 跳绳 自行车
头盔 帐篷 睡袋 鱼竿 篮球 足球 羽毛球拍 乒乓球拍 泳衣 泳镜 雨伞 墨镜 项链 手链 耳环 戒指 手表 发夹 电动车 轮胎
机油 行车记录仪 汽车坐垫 脚垫 车载充电器 花盆 绿植 种子 化肥 螺丝刀 电钻 工具箱 胶带 灯泡 门锁 水龙头 花洒 马桶
瓷砖 油漆 壁纸 乳胶漆
""".split()

MODIFIERS = """
新款 正品 家用 加厚 加大 大码 小号 便携 迷你 无线 智能 防水 防滑 透气 保暖 轻薄 纯棉 真丝 羊毛 不锈钢 实木
一次性 多功能 大容量 静音 可折叠 可定制 网红 同款 韩版 日系 复古 简约 百搭 修身 宽松 高腰 加绒 速干 耐磨 原装
进口 国产 手工 有机 天然 无糖 低脂 清香 浓香 特级 经典 限量 升级版 专业 商用 儿童 男士 女士 男女 情侣 学生
中老年 婴儿 孕妇 宠物 夏季 冬季 春秋 秋冬 四季 白色 黑色 红色 粉色 蓝色 灰色 卡其色 透明
""".split()

# where a title says where, or how to buy: never part of a product
EXTRAS = """
包邮 厂家直销 批发 现货 特价 清仓 促销 热卖 官方旗舰店 一件代发 可定制logo 送礼 礼盒装 买一送一 七天无理由
北京 上海 广州 深圳 杭州 义乌 成都 武汉 日本 韩国 德国 美国
""".split()

UNITS = ["{}克", "{}g", "{}ml", "{}毫升", "{}件套", "{}只装", "{}片", "{}双", "{}寸", "{}斤", "{}米", "{}L"]


def _title(rng: random.Random) -> dict:
    """One title: 1-3 products among modifiers, sizes and selling words, with the products' spans."""
    chunks: list[tuple[str, bool]] = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        chunks += [(word, False) for word in rng.sample(MODIFIERS, rng.randint(0, 3))]
        chunks.append((rng.choice(PRODUCTS), True))
        if rng.random() < 0.3:
            chunks.append((rng.choice(UNITS).format(rng.choice([1, 2, 3, 5, 10, 30, 50, 100, 250, 500])), False))
    for _ in range(rng.randint(0, 2)):
        chunks.insert(rng.randint(0, len(chunks)), (rng.choice(EXTRAS), False))
    separator = rng.choice(["", "", "", " ", "，"])
    text, entities = "", []
    for word, is_product in chunks:
        if text:
            text += separator
        if is_product:
            entities.append({"start_offset": len(text), "end_offset": len(text) + len(word), "label": "产品"})
        text += word
    return {"text": text, "entities": entities, "relations": []}


def titles(count: int, seed: int = SEED) -> list[dict]:
    """``count`` doccano records (``id`` = ``shop-title-<n>``), the same for the same seed."""
    rng = random.Random(seed)
    return [{"id": f"shop-title-{n}", **_title(rng)} for n in range(count)]


def fetch(cache: Path) -> Path:
    """What the titles are made from: this module (its word lists). Nothing is downloaded or cached, so a
    change to the lists is never hidden by an old copy; ``cache`` keeps every source's ``fetch`` alike."""
    return Path(__file__)


def records(path: Path) -> list[dict]:
    """The :data:`POOL` generated titles (``path``, from :func:`fetch`, names what they are made from)."""
    return titles(POOL)
